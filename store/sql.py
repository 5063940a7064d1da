"""Small query helpers shared by the store's modules."""

from __future__ import annotations

from typing import Any

import duckdb


def first_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> tuple | None:
    """The first row of a query, or None. Fetches everything: DuckDB refuses further work
    on a connection while a result is only partly fetched."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    row = first_row(con, sql, params)
    return None if row is None else row[0]
