"""Decisions on image pairs: the `decisions` table.

Decisions are keyed by the two images' content hashes (least first, like the `pairs`
view joins them): a decision survives moves, renames and re-scans, and a pair of the
same two contents found again anywhere is recognised as already decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from store.clock import utcnow
from store.sql import Merged, first_row, merge_counts, records, registered
from store.vocab import PAIR_DECISIONS, Decision

MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS decisions (
            hash_a VARCHAR NOT NULL, hash_b VARCHAR NOT NULL,
            decision VARCHAR NOT NULL,
            note VARCHAR,
            decided_by VARCHAR,
            decided_at TIMESTAMP NOT NULL,
            PRIMARY KEY (hash_a, hash_b))""",
    ],
    # One decision vocabulary for pairs and suggestions: a pair's "not now" was "skip".
    4: [f"UPDATE decisions SET decision = '{Decision.SKIPPED}' WHERE decision = 'skip'"],
}

# The table's own columns, in its order (an export restores them by these names).
COLUMNS = ("hash_a", "hash_b", "decision", "note", "decided_by", "decided_at")


def record_decision(
    con: duckdb.DuckDBPyConnection,
    hash_1: str,
    hash_2: str,
    decision: str,
    who: str,
    note: str | None = None,
    now: datetime | None = None,
) -> None:
    """Set (or replace) the decision on the pair of these two contents. SKIPPED means
    "not now": the pair leaves the unreviewed list and waits under the "skipped" filter
    until someone decides it or clears the skip."""
    if decision not in PAIR_DECISIONS:
        raise ValueError(
            f"unknown decision {decision!r}: one of {', '.join(map(str, PAIR_DECISIONS))}"
        )
    con.execute(
        """INSERT INTO decisions (hash_a, hash_b, decision, note, decided_by, decided_at)
           VALUES (least($h1, $h2), greatest($h1, $h2), $decision, $note, $who, $now)
           ON CONFLICT (hash_a, hash_b) DO UPDATE SET decision = excluded.decision,
               note = excluded.note, decided_by = excluded.decided_by,
               decided_at = excluded.decided_at""",
        {
            "h1": hash_1,
            "h2": hash_2,
            "decision": str(decision),
            "note": note,
            "who": who,
            "now": now or utcnow(),
        },
    )


def clear_decision(
    con: duckdb.DuckDBPyConnection, hash_1: str, hash_2: str, only_if: str | None = None
) -> bool:
    """Put the pair back into the unreviewed list; with `only_if`, only when its decision
    is still that one (an undo must not erase a decision taken since)."""
    row = con.execute(
        """DELETE FROM decisions WHERE hash_a = least($h1, $h2) AND hash_b = greatest($h1, $h2)
               AND ($only IS NULL OR decision = $only)
           RETURNING decision""",
        {"h1": hash_1, "h2": hash_2, "only": None if only_if is None else str(only_if)},
    ).fetchone()
    return row is not None


def decision_for(con: duckdb.DuckDBPyConnection, hash_1: str, hash_2: str) -> str | None:
    row = first_row(
        con,
        "SELECT decision FROM decisions WHERE hash_a = least(?, ?) AND hash_b = greatest(?, ?)",
        [hash_1, hash_2, hash_1, hash_2],
    )
    return None if row is None else str(row[0])


def decisions_of(
    con: duckdb.DuckDBPyConnection, hash_pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """Decisions on the given content pairs, keyed (least hash, greatest hash)."""
    keys = sorted({(min(a, b), max(a, b)) for a, b in hash_pairs})
    if not keys:
        return {}
    rows = con.execute(
        """SELECT d.hash_a, d.hash_b, d.decision FROM decisions d
           JOIN (SELECT unnest(?) AS a, unnest(?) AS b) k ON k.a = d.hash_a AND k.b = d.hash_b""",
        [[k[0] for k in keys], [k[1] for k in keys]],
    ).fetchall()
    return {(r[0], r[1]): r[2] for r in rows}


def counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How many pairs carry each decision."""
    return {
        str(r[0]): int(r[1])
        for r in con.execute("SELECT decision, count(*) FROM decisions GROUP BY 1").fetchall()
    }


# -- backup (store/backup.py) ------------------------------------------------------------


def export_rows(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every pair decision, oldest first, with one current path of each content (None
    when none is stored) for the reader."""
    return records(
        con,
        f"""SELECT {", ".join("d." + c for c in COLUMNS)},
                   (SELECT min(path) FROM files WHERE hash = d.hash_a) AS path_a,
                   (SELECT min(path) FROM files WHERE hash = d.hash_b) AS path_b
            FROM decisions d ORDER BY d.decided_at, d.hash_a, d.hash_b""",
    )


def merge_rows(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> Merged:
    """Restore pair decisions (keyed by content, so any store of the same images takes
    them): a pair the store has not decided gets the backup's decision; one the store
    decided later than the backup keeps the store's."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        a, b = sorted((str(r["hash_a"]), str(r["hash_b"])))
        key = (a, b)
        if key not in latest or r["decided_at"] > latest[key]["decided_at"]:
            latest[key] = {**r, "hash_a": a, "hash_b": b}
    if not latest:
        return Merged()
    incoming = list(latest.values())
    table = pa.table(
        {
            "hash_a": pa.array([r["hash_a"] for r in incoming], pa.string()),
            "hash_b": pa.array([r["hash_b"] for r in incoming], pa.string()),
            "decision": pa.array([str(r["decision"]) for r in incoming], pa.string()),
            "note": pa.array([r.get("note") for r in incoming], pa.string()),
            "decided_by": pa.array([r.get("decided_by") for r in incoming], pa.string()),
            "decided_at": pa.array([r["decided_at"] for r in incoming], pa.timestamp("us")),
        }
    )
    with registered(con, "incoming_decisions", table):
        merged = merge_counts(
            con,
            """SELECT count(*) FILTER (WHERE d.hash_a IS NULL),
                      count(*) FILTER (WHERE d.decided_at < i.decided_at),
                      count(*) FILTER (WHERE d.decided_at >= i.decided_at)
               FROM incoming_decisions i
               LEFT JOIN decisions d ON d.hash_a = i.hash_a AND d.hash_b = i.hash_b""",
        )
        con.execute(
            f"""INSERT INTO decisions ({", ".join(COLUMNS)})
                SELECT {", ".join(COLUMNS)} FROM incoming_decisions
                ON CONFLICT (hash_a, hash_b) DO UPDATE SET decision = excluded.decision,
                    note = excluded.note, decided_by = excluded.decided_by,
                    decided_at = excluded.decided_at
                WHERE decisions.decided_at < excluded.decided_at"""
        )
    return merged
