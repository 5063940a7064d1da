"""Small query helpers shared by the store's modules."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

T = TypeVar("T")


def first_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> tuple | None:
    """The first row of a query, or None. Fetches everything: DuckDB refuses further work
    on a connection while a result is only partly fetched."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def records(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every row of a query as a dict by column name: rows are read by name, so a column
    added to a SELECT list, or moved in it, cannot shift another one's value."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def rows_as(
    make: Callable[..., T],
    con: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | dict[str, Any] | None = None,
) -> list[T]:
    """Every row of a query built by keyword: `make(**row)`, the SELECT list naming (or
    aliasing) each column as the field it fills."""
    return [make(**row) for row in records(con, sql, params)]


@dataclass(frozen=True)
class Merged:
    """What merging a backup's rows into a table did: rows that were not there, rows
    replaced by the backup's newer copy, rows kept (the store's copy as new or newer)."""

    new: int = 0
    replaced: int = 0
    kept: int = 0


def merge_counts(con: duckdb.DuckDBPyConnection, sql: str) -> Merged:
    """A Merged from a query whose one row is (new, replaced, kept)."""
    row = first_row(con, sql)
    return Merged(*(int(v or 0) for v in row)) if row else Merged()


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> Iterator[None]:
    """An Arrow table visible to the connection's queries under `name` for the block."""
    con.register(name, table)
    try:
        yield
    finally:
        con.unregister(name)
