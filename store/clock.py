"""The one clock the store's timestamps come from.

DuckDB's TIMESTAMP has no zone: every stored time is naive UTC, written by the daemon
(runs, encodings, suggestions) and the dashboard (decisions, actions) alike, so both take
it from here (the store cannot import the daemon).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: what a TIMESTAMP column holds."""
    return datetime.now(UTC).replace(tzinfo=None)
