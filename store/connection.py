"""Opening the DuckDB file with the lock discipline every process here must follow.

DuckDB lets one process hold a read-write connection, and a writer excludes every reader
(docs/design.md). So nobody keeps a connection: open, do one short unit of work, close.
An open that meets another process's lock retries with jittered backoff until a deadline,
and the caller keeps its pending work meanwhile.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from store import meta
from store.schema import ensure_schema


class StoreBusy(TimeoutError):
    """Another process held the store's lock past our deadline."""


class StoreMissing(FileNotFoundError):
    """A read was asked of a store that was never created."""


class StoreLost(RuntimeError):
    """The store file a long-running writer opened was deleted or replaced since."""


def file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at path, None when there is none."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class StoreGuard:
    """Remembers which file a long-running writer (the daemon) has been writing to.

    Every open is by name, and DuckDB creates a missing file: a store deleted under the
    daemon would silently be replaced by an empty one. The guard compares the file's
    (device, inode) before each write open with the one first opened, and, once open,
    a random id the store keeps in `meta` (a file system may give a new file the inode
    of a deleted one: seen in tests/test_daemon_hardening.py). `reset()` accepts whatever is
    there next (the rebuild).
    """

    def __init__(self) -> None:
        self.identity: tuple[int, int] | None = None
        self.store_id: str | None = None

    def reset(self) -> None:
        self.identity = None
        self.store_id = None

    def check(self, path: Path) -> None:
        if self.identity is None:
            return
        now = file_identity(path)
        if now != self.identity:
            what = "deleted" if now is None else "replaced by another file"
            raise StoreLost(f"store {path} was {what} while facelint was writing to it")

    def opened(self, path: Path, con: duckdb.DuckDBPyConnection) -> None:
        """Inside the write transaction of a fresh open: pin, or check, the store."""
        store_id = meta.get_meta(con, "store_id")
        if self.identity is None:
            if store_id is None:
                store_id = uuid.uuid4().hex
                meta.set_meta(con, store_id=store_id)
            self.identity, self.store_id = file_identity(path), store_id
            return
        self.check(path)
        if store_id != self.store_id:
            raise StoreLost(f"store {path} was replaced by another file since it was opened")


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    if isinstance(exc, duckdb.ConnectionException):
        # Same process, other mode: DuckDB refuses a read-only and a read-write connection
        # to one file side by side. It clears when the other connection closes.
        return "different configuration" in text
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


@contextmanager
def open_store(
    path: Path | str,
    *,
    read_only: bool = False,
    timeout: float = 600.0,
    on_wait: Callable[[float, str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    guard: StoreGuard | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work; writes commit when the block exits cleanly.

    `on_wait(waited_seconds, message)` is called before each retry so that a service can
    show "waiting for store" while another process holds the file. With a `guard`, a
    write open of a file that is not the one the guard first saw raises StoreLost, and
    nothing is written.
    """
    path = Path(path)
    if read_only and not path.exists():
        raise StoreMissing(f"no store at {path}: run `facelint scan` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    start = clock()
    delay = 0.05
    while True:
        if guard is not None and not read_only:
            guard.check(path)
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            if not _is_lock_error(exc):
                raise
            waited = clock() - start
            if waited >= timeout:
                raise StoreBusy(
                    f"store {path} stayed locked by another process for {waited:.0f} s: {exc}"
                ) from exc
            if on_wait is not None:
                on_wait(waited, str(exc).split("\n")[0])
            sleep(min(delay * (0.5 + random.random()), max(0.0, timeout - waited)))
            delay = min(delay * 2, 2.0)
    try:
        if not read_only:
            ensure_schema(con)
            con.execute("BEGIN TRANSACTION")
            try:
                if guard is not None:
                    guard.opened(path, con)
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        else:
            yield con
    finally:
        con.close()
