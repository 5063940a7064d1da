"""Small query helpers shared by the store's modules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import duckdb

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
