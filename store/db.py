"""The store as one object: reads open read-only, writes open one transaction.

Provisional shape (the store helper's fuller `Store` replaces this file): `reading()` and
`writing()` over `open_store`, with the guard checked before reads too, so a daemon
whose store was deleted learns it at its next read, not only at its next write.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from store.connection import StoreGuard, open_store


class Store:
    def __init__(
        self,
        path: Path | str,
        *,
        lock_timeout: float,
        on_wait: Callable[[float, str], None] | None = None,
        guard: StoreGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self.on_wait = on_wait
        self.guard = guard
        self.clock = clock
        self.sleep = sleep

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self.guard is not None:
            self.guard.check(self.path)
        with open_store(
            self.path,
            read_only=True,
            timeout=self.lock_timeout,
            on_wait=self.on_wait,
            clock=self.clock,
            sleep=self.sleep,
        ) as con:
            yield con

    @contextmanager
    def writing(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with open_store(
            self.path,
            timeout=self.lock_timeout,
            on_wait=self.on_wait,
            clock=self.clock,
            sleep=self.sleep,
            guard=self.guard,
        ) as con:
            yield con
