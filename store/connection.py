"""Opening the DuckDB file with the lock discipline every process here must follow.

DuckDB lets one process hold a read-write connection, and a writer excludes every reader
(docs/design.md). So nobody keeps a connection: open, do one short unit of work, close.
An open that meets another process's lock retries with jittered backoff until a deadline,
and the caller keeps its pending work meanwhile.

An open ATTACHes the file to one in-memory DuckDB this process keeps, and DETACHes it
when its last user in the process is done: the file's lock is taken and let go as a
connection's would be, but a new database instance costs 5-8 times an attach (DuckDB's
catalog of built-in functions, built per instance, even for `:memory:`), and a daemon
step opens the store several times (docs/design.md, "Opening the store").
"""

from __future__ import annotations

import ctypes
import functools
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from store import meta
from store.schema import ensure_schema


class StoreBusy(TimeoutError):
    """Another process held the store's lock past our deadline."""


@dataclass(frozen=True)
class LockHolder:
    """A process holding DuckDB's lock on a store file, from the kernel's lock table."""

    pid: int
    # "write" (a read-write connection: excludes everyone) or "read" (read-only ones).
    mode: str
    # Its command line, "" when it cannot be read (gone, another user's).
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}" + (f" ({self.command})" if self.command else "")


def _command_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    args = [a.decode(errors="backslashreplace") for a in raw.split(b"\0") if a]
    if args:
        args[0] = os.path.basename(args[0])
    text = " ".join(args)
    return text if len(text) <= 120 else text[:117] + "..."


def lock_holders(path: Path | str) -> list[LockHolder]:
    """The processes (other than this one) holding a lock on the file, writers first.

    DuckDB takes a POSIX (fcntl) lock on its file: a write lock for a read-write
    connection, a read lock for a read-only one. Linux lists them in /proc/locks by
    device and inode, with the owner's pid, so a waiter can say who it waits for. Empty
    where that cannot be told (not Linux, another pid namespace, the lock gone since).
    """
    try:
        st = os.stat(path)
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found: dict[int, str] = {}
    for line in text.splitlines():
        parts = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; "->" marks a waiter.
        if "POSIX" not in parts or "->" in parts:
            continue
        i = parts.index("POSIX")
        if len(parts) <= i + 4 or parts[i + 4] != want:
            continue
        try:
            pid = int(parts[i + 3])
        except ValueError:
            continue
        if pid == os.getpid() or pid <= 0:
            continue
        mode = "write" if parts[i + 2] == "WRITE" else "read"
        if found.get(pid) != "write":
            found[pid] = mode
    return sorted(
        (LockHolder(pid, mode, _command_line(pid)) for pid, mode in found.items()),
        key=lambda h: (h.mode != "write", h.pid),
    )


def describe_holders(holders: list[LockHolder], name: Callable[[LockHolder], str] = str) -> str:
    """ "held for writing by pid 12 (duckdb s.duckdb)", "read by pid 3 (...) and 1
    other"; "held by another process" when the kernel did not say. `name` says who the
    first holder is (daemon/common/storewait.py knows the daemon's and the dashboard's)."""
    if not holders:
        return "held by another process"
    first = holders[0]
    verb = "held for writing by" if first.mode == "write" else "read by"
    more = len(holders) - 1
    tail = f" and {more} other process{'es' if more > 1 else ''}" if more else ""
    return f"{verb} {name(first)}{tail}"


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
        # Same process, other mode, by duckdb.connect: DuckDB refuses a read-only and a
        # read-write connection to one file side by side. It clears when the other closes.
        return "different configuration" in text
    if isinstance(exc, duckdb.ResourceInUseException):
        # The same, by ATTACH: this process has the file attached in the other mode.
        return "file handle conflict" in text
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


class _Attachments:
    """This process's in-memory DuckDB and the store files attached to it, each once per
    mode however many threads use it (DuckDB refuses a second attach of a file open for
    writing), detached when its last user is done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._host: duckdb.DuckDBPyConnection | None = None
        self._users: dict[tuple[str, bool], tuple[str, int]] = {}
        self._made = 0
        self._inherited: list[duckdb.DuckDBPyConnection] = []
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A forked child (subprocess with a preexec_fn forks too) has the parent's memory
        # but not its threads: it starts a DuckDB of its own if it opens the store. The
        # parent's is kept, never closed here: its destructor would wait on threads the
        # child does not have (seen: `facelint up`'s dashboard hung before its exec).
        if self._host is not None:
            self._inherited.append(self._host)
        self._lock = threading.Lock()
        self._host = None
        self._users = {}

    def open(self, path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
        """A connection of its own whose default database is the file (attached if no
        one here has it in that mode); raises DuckDB's error when the attach does."""
        key = (path, read_only)
        # What was freed since the last detach (results read then, dropped later).
        give_back_freed_memory()
        with self._lock:
            if self._host is None:
                self._host = duckdb.connect(":memory:")
            alias, users = self._users.get(key, ("", 0))
            if not users:
                self._made += 1
                alias = f"store_{self._made}"
                mode = " (READ_ONLY)" if read_only else ""
                self._host.execute(f"ATTACH ? AS {alias}{mode}", [path])
            self._users[key] = (alias, users + 1)
            con = self._host.cursor()
        try:
            con.execute(f"USE {alias}")
        except BaseException:
            con.close()
            self.close(path, read_only)
            raise
        return con

    def close(self, path: str, read_only: bool) -> None:
        """One user of the file is done; the last one detaches it (a writer's detach
        checkpoints, as a connection's close does)."""
        key = (path, read_only)
        with self._lock:
            alias, users = self._users[key]
            if users > 1:
                self._users[key] = (alias, users - 1)
                return
            del self._users[key]
            assert self._host is not None
            self._host.execute(f"DETACH {alias}")
            give_back_freed_memory()


_attachments = _Attachments()


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc's
    except (OSError, AttributeError):
        return None


def give_back_freed_memory() -> None:
    """Hand what the unit of work freed back to the system. A closed instance took its
    threads' malloc arenas with it; the kept one keeps them, holding about one copy of
    the largest result it read (measured: 400k vectors read, 525 MiB resident against
    324 with an instance per open, 282 after a trim; a trim costs ~0.1 ms)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


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
    on_opened: Callable[[float], None] | None = None,
    own_instance: bool = False,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one unit of work; writes commit when the block exits cleanly.

    `on_wait(waited_seconds, message)` is called before each retry so that a service can
    show "waiting for store" while another process holds the file; `on_opened(seconds)`
    once the open went through after waiting (the whole wait). With a `guard`, a
    write open of a file that is not the one the guard first saw raises StoreLost, and
    nothing is written. `own_instance`: a DuckDB of its own, not the process's shared
    one, for a connection whose settings must not outlive it (`facelint sql` locks them).
    """
    path = Path(path)
    name = os.path.abspath(path)
    if read_only and not path.exists():
        raise StoreMissing(f"no store at {path}: run `facelint scan` first")
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    start = clock()
    delay = 0.05
    refused = False
    while True:
        if guard is not None and not read_only:
            guard.check(path)
        try:
            if own_instance:
                con = duckdb.connect(name, read_only=read_only)
            else:
                con = _attachments.open(name, read_only)
            break
        except (
            duckdb.IOException,
            duckdb.ConnectionException,
            duckdb.ResourceInUseException,
        ) as exc:
            if not _is_lock_error(exc):
                raise
            refused = True
            waited = clock() - start
            if waited >= timeout:
                raise StoreBusy(
                    f"store {path} stayed locked by another process for {waited:.0f} s "
                    f"({describe_holders(lock_holders(path))}): {str(exc).splitlines()[0]}"
                ) from exc
            if on_wait is not None:
                on_wait(waited, str(exc).split("\n")[0])
            sleep(min(delay * (0.5 + random.random()), max(0.0, timeout - waited)))
            delay = min(delay * 2, 2.0)
    try:
        if refused and on_opened is not None:
            on_opened(clock() - start)
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
        if not own_instance:
            _attachments.close(name, read_only)
