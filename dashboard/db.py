"""Opening the store for one query or one write, the way every facelint process must.

Nothing here is cached: a connection held between page runs would hold DuckDB's lock and
stall the daemon (docs/design.md, "DuckDB, the store"). Streamlit serves every browser session
from threads of one process, and DuckDB refuses a read-only and a read-write connection
to one file inside one process, so this process's own opens take turns behind a lock.

A page that has to wait says so on the page at the first retry (within a second): which
process holds the store and how long the page waits (`page_lock_timeout`); the note goes
once the store opened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import duckdb

from daemon.common.storewait import WaitReporter
from dashboard.settings import DashboardSettings
from store.connection import StoreBusy
from store.db import Store

T = TypeVar("T")

log = logging.getLogger("facelint.dashboard.db")

_in_process = threading.Lock()


# A wait for another page of this dashboard shorter than this goes unsaid.
SAY_AFTER_SECONDS = 0.5


class _PageNote:
    """One note on the page while this run waits for the store; gone once it opened."""

    def __init__(self) -> None:
        self._slot: Any = None

    def say(self, text: str) -> None:
        import streamlit as st
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        if get_script_run_ctx(suppress_warning=True) is None:
            return  # not a page run (a test calling the function): nowhere to say it
        from dashboard.ui import md

        if self._slot is None:
            self._slot = st.empty()
        self._slot.caption(f"⏳ {md(text)}")

    def clear(self) -> None:
        if self._slot is not None:
            self._slot.empty()
            self._slot = None


@contextmanager
def _turn(timeout: float, note: _PageNote) -> Iterator[float]:
    """This process's turn at the store; yields the seconds left of `timeout`."""
    started = time.monotonic()
    if not _in_process.acquire(timeout=min(timeout, SAY_AFTER_SECONDS)):
        note.say(
            f"another page of this dashboard is using the store; waiting up to "
            f"{timeout:g} s (`page_lock_timeout`)"
        )
        if not _in_process.acquire(timeout=max(0.0, timeout - (time.monotonic() - started))):
            raise StoreBusy(f"another page of this dashboard held the store for {timeout:.0f} s")
    try:
        yield max(0.1, timeout - (time.monotonic() - started))
    finally:
        _in_process.release()


def _store(settings: DashboardSettings, left: float, note: _PageNote) -> Store:
    says = WaitReporter(
        settings.db,
        settings.status_path(),
        settings.page_lock_timeout,
        "page_lock_timeout",
        note.say,
    )
    return Store(settings.db, lock_timeout=left, on_wait=says)


def _log_wait(store: Store, started: float, opened: float | None) -> None:
    says = store.on_wait
    if isinstance(says, WaitReporter) and says.first_said_after is not None:
        log.info(
            "a page waited for the store: opened in %s s, said after %.2f s, done after %.2f s: %s",
            "(not)" if opened is None else f"{opened - started:.2f}",
            says.first_said_after,
            time.monotonic() - started,
            says.last_note,
        )


def read(settings: DashboardSettings, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """fn(connection) on a read-only connection opened for this call only."""
    with _connection(settings, write=False) as con:
        return fn(con)


@contextmanager
def writing(settings: DashboardSettings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection for one short unit of work: commits when the block exits
    cleanly, rolls back when it raises."""
    with _connection(settings, write=True) as con:
        yield con


@contextmanager
def _connection(settings: DashboardSettings, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    # The page's note on a wait (who holds the store, how long) shows while it waits and
    # goes once the store is open; the wait itself is logged either way.
    note = _PageNote()
    started = time.monotonic()
    opened: float | None = None
    store: Store | None = None
    try:
        with _turn(settings.page_lock_timeout, note) as left:
            store = _store(settings, left, note)
            with store.writing() if write else store.reading() as con:
                opened = time.monotonic()
                note.clear()
                yield con
    finally:
        note.clear()
        if store is not None:
            _log_wait(store, started, opened)
