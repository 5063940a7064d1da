"""The store's facts: the `meta` table (key -> value) and the `counters` table.

Keys kept in `meta`: `schema_version`, `store_id` (the guard's, store/connection.py),
`model` (the model the pairs were computed with: the store's model), `compare_params`
(what the compare step ran with, "threshold=0.4;k=20"), `max_pairs_per_image` (the
`hubs` view reads it) and `suggested_at` (the generation the suggestions were computed
at). Counters: `generation` (bumped by every change the daemon's computations depend
on), `encoded_total` and `encoded:<model>`.

Each fact is a function of a connection, for use inside a unit of work; `store.db.Store`
offers the same facts as methods that open the store read-only for one look.
"""

from __future__ import annotations

import duckdb

from store.sql import first_row

MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        "CREATE TABLE IF NOT EXISTS counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL)",
    ],
}

# The SQL spelling of "the store's model", for a view or a query that must name it inside
# one statement (a Python caller asks model(con)).
MODEL_SQL = "(SELECT value FROM meta WHERE key = 'model')"


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = first_row(con, "SELECT value FROM meta WHERE key = ?", [key])
    return None if row is None else str(row[0])


def set_meta(con: duckdb.DuckDBPyConnection, **values: object) -> None:
    for key, value in values.items():
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [key, str(value)])


def get_counter(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = first_row(con, "SELECT value FROM counters WHERE name = ?", [name])
    return 0 if row is None else int(row[0])


def bump_counter(con: duckdb.DuckDBPyConnection, name: str, by: int) -> None:
    con.execute(
        """INSERT INTO counters (name, value) VALUES (?, ?)
           ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value""",
        [name, by],
    )


def model(con: duckdb.DuckDBPyConnection) -> str | None:
    """The model the store's pairs were computed with; None before the first compare."""
    return get_meta(con, "model")


def generation(con: duckdb.DuckDBPyConnection) -> int:
    """Bumped by every write the daemon's computations read: a computation started at one
    generation may only be written if the store is still at it."""
    return get_counter(con, "generation")


def compare_params(con: duckdb.DuckDBPyConnection) -> str | None:
    return get_meta(con, "compare_params")


def threshold(con: duckdb.DuckDBPyConnection) -> float | None:
    """The lowest score the store keeps pairs for (nothing below it is stored); None
    before the first compare."""
    # The compare step records what it ran with as "threshold=0.4;k=20".
    params = compare_params(con)
    if params is None:
        return None
    for part in params.split(";"):
        name, _, value = part.partition("=")
        if name.strip() == "threshold":
            try:
                return float(value)
            except ValueError:
                return None
    return None
