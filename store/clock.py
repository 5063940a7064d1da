"""The one clock every stored timestamp is read from: naive UTC, as DuckDB TIMESTAMP holds it."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
