"""The `runs` table: one row per scan or reconcile, the history the status page shows."""

from __future__ import annotations

from datetime import datetime

import duckdb

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS runs (
            started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
            kind VARCHAR NOT NULL, root VARCHAR,
            images BIGINT, encoded BIGINT, reused BIGINT, removed BIGINT, failed BIGINT,
            pairs BIGINT, full_compare BOOLEAN)""",
    ],
}

# The figures a run records, as its columns are named.
FIGURES = ("images", "encoded", "reused", "removed", "failed", "pairs", "full_compare")


def record_run(
    con: duckdb.DuckDBPyConnection,
    started_at: datetime,
    finished_at: datetime,
    kind: str,
    root: str,
    figures: dict[str, int | bool],
) -> None:
    columns = ("started_at", "finished_at", "kind", "root", *FIGURES)
    con.execute(
        f"""INSERT INTO runs ({", ".join(columns)})
            VALUES ({", ".join("$" + c for c in columns)})""",
        {
            "started_at": started_at,
            "finished_at": finished_at,
            "kind": kind,
            "root": root,
            **{f: figures[f] for f in FIGURES},
        },
    )


def last_run(con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
    """The latest run's kind and times, as the status command shows them."""
    rows = con.execute(
        "SELECT kind, started_at, finished_at FROM runs ORDER BY finished_at DESC LIMIT 1"
    ).fetchall()
    if not rows:
        return None
    kind, started_at, finished_at = rows[0]
    return {"kind": kind, "started_at": str(started_at), "finished_at": str(finished_at)}
