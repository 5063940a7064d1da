"""Opening the store for one query or one write, the way every facelint process must.

Nothing here is cached: a connection held between page runs would hold DuckDB's lock and
stall the daemon (docs/design.md, "DuckDB, the store"). Streamlit serves every browser session
from threads of one process, and DuckDB refuses a read-only and a read-write connection
to one file inside one process, so this process's own opens take turns behind a lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import duckdb

from dashboard.settings import DashboardSettings
from store.connection import StoreBusy
from store.db import Store

T = TypeVar("T")

_in_process = threading.Lock()


@contextmanager
def _turn(timeout: float) -> Iterator[float]:
    """This process's turn at the store; yields the seconds left of `timeout`."""
    started = time.monotonic()
    if not _in_process.acquire(timeout=timeout):
        raise StoreBusy(f"another page of this dashboard held the store for {timeout:.0f} s")
    try:
        yield max(0.1, timeout - (time.monotonic() - started))
    finally:
        _in_process.release()


def read(settings: DashboardSettings, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """fn(connection) on a read-only connection opened for this call only."""
    with _turn(settings.page_lock_timeout) as left:
        return Store(settings.db, lock_timeout=left).read(fn)


@contextmanager
def writing(settings: DashboardSettings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection for one short unit of work: commits when the block exits
    cleanly, rolls back when it raises."""
    with (
        _turn(settings.page_lock_timeout) as left,
        Store(settings.db, lock_timeout=left).writing() as con,
    ):
        yield con
