"""The store as one object: where it is, how long to wait for its lock, and its facts.

Every reader opens read-only, so a read never takes the writer's lock and never waits
behind another reader; only a unit of work that writes opens read-write (and brings the
schema up to date, and checks the guard). Nobody keeps a connection: each `reading()` or
`writing()` is one short unit of work (store/connection.py says why).

    store = Store(settings.db, lock_timeout=settings.lock_timeout)
    with store.reading() as con:          # read-only; StoreMissing when there is no file
        files = catalog.load_files(con)
    with store.writing() as con:          # one transaction: commits when the block exits
        catalog.add_files(con, rows, now)
    store.model()                          # a fact: one read-only open of its own

Inside a unit of work, ask the facts of its connection instead (`meta.model(con)`): a
second open there would wait for the first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import duckdb

from store import meta
from store.connection import StoreGuard, open_store

T = TypeVar("T")


class Store:
    """One DuckDB file and the discipline of opening it.

    `lock_timeout`: how long an open waits for another process's lock before raising
    StoreBusy. `on_wait(waited_seconds, message)` is told before each retry. With a
    `guard`, a read or write of a file that is not the one the guard first wrote to
    raises StoreLost, and nothing is read or written. `on_opened(seconds)` hears the
    whole wait of an open that had to wait. `clock`
    and `sleep` drive the retry's deadline and backoff (a test passes fakes).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        lock_timeout: float,
        on_wait: Callable[[float, str], None] | None = None,
        guard: StoreGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_opened: Callable[[float], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        # Told the whole wait once an open that had to wait went through.
        self.on_opened = on_opened
        self.guard = guard
        self.clock = clock
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def reading(self, own_instance: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for one look; StoreMissing when there is no store.
        With a guard, a store deleted or replaced since the guard pinned it raises
        StoreLost here too: a daemon learns it at its next read, not its next write.
        `own_instance`: see open_store."""
        if self.guard is not None:
            self.guard.check(self.path)
        with open_store(
            self.path,
            read_only=True,
            timeout=self.lock_timeout,
            on_wait=self.on_wait,
            clock=self.clock,
            sleep=self.sleep,
            on_opened=self.on_opened,
            own_instance=own_instance,
        ) as con:
            yield con

    @contextmanager
    def writing(self, own_instance: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One read-write transaction (the store is created, and its schema brought up to
        date, on the way in): commits when the block exits cleanly, rolls back when it
        raises. `own_instance`: see open_store."""
        with open_store(
            self.path,
            timeout=self.lock_timeout,
            on_wait=self.on_wait,
            clock=self.clock,
            sleep=self.sleep,
            guard=self.guard,
            on_opened=self.on_opened,
            own_instance=own_instance,
        ) as con:
            yield con

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """fn(connection) on a read-only connection opened for this call only."""
        with self.reading() as con:
            return fn(con)

    def write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """fn(connection) in one read-write transaction opened for this call only."""
        with self.writing() as con:
            return fn(con)

    # -- facts (each one read-only open; store.meta has them for an open connection) ---

    def meta(self, key: str) -> str | None:
        return self.read(lambda con: meta.get_meta(con, key))

    def counter(self, name: str) -> int:
        return self.read(lambda con: meta.get_counter(con, name))

    def model(self) -> str | None:
        """The model the stored pairs were computed with (None before the first compare)."""
        return self.read(meta.model)

    def threshold(self) -> float | None:
        """The lowest score stored pairs have (None before the first compare)."""
        return self.read(meta.threshold)

    def generation(self) -> int:
        return self.read(meta.generation)
