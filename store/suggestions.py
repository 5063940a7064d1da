"""Suggested mistakes and the decisions on them: `suggestion_rows`, `suggestion_pairs`,
`suggestion_decisions`, and the `suggestions` view over them.

A suggestion's id is stable: `same:<folder id>:<folder id>` (smaller first), `misfiled:`
or `stranger:<content hash>:<folder id>`, `duplicate:<content hash>:<folder id of the
copy>`. Folders have ids that survive renames (store/folders.py) and images are known by
content, so an id survives rescans, moves, folder renames, restarts and a model switch,
and a decision keyed by it does too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from store.sql import first_row
from store.vocab import SUGGESTION_DECISIONS, Decision, Kind, State, Status

DECISIONS = SUGGESTION_DECISIONS


@dataclass(frozen=True)
class SuggestionRow:
    id: str
    kind: str
    model: str | None
    folder_a: int | None
    folder_b: int | None
    hash: str | None
    file_id: int | None
    rank_score: float
    strength: float
    images: int
    evidence: str
    class_a_name: str | None
    class_b_name: str | None
    path_name: str | None


@dataclass(frozen=True)
class PastDecision:
    decision: str
    rank_score: float | None
    images: int | None
    decided_at: datetime
    reopened: bool


@dataclass(frozen=True)
class Suggestion:
    """One row of the `suggestions` view, as the dashboard shows it."""

    id: str
    kind: str
    rank_score: float
    class_a: str | None
    class_b: str | None
    path: str | None
    evidence: str
    state: str
    hash: str | None
    images: int | None
    decided_by: str | None
    target: str | None


def load_decisions(con: duckdb.DuckDBPyConnection) -> dict[str, PastDecision]:
    rows = con.execute(
        """SELECT id, decision, rank_score, images, decided_at, reopened_at IS NOT NULL
           FROM suggestion_decisions"""
    ).fetchall()
    return {r[0]: PastDecision(r[1], r[2], r[3], r[4], bool(r[5])) for r in rows}


def write_suggestions(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[SuggestionRow],
    pairs: Sequence[tuple[str, int, int, float]],
    reopen: dict[str, str],
    now: datetime,
) -> None:
    """Make `rows` the current suggestions: new ones appear, known ones keep their first
    sighting, ones no longer computed leave (a decided one stays, inactive, so the view
    keeps every decision). `reopen`: id -> why, for rejected ones whose evidence grew."""
    table = pa.table(
        {
            "id": pa.array([r.id for r in rows], pa.string()),
            "kind": pa.array([r.kind for r in rows], pa.string()),
            "model": pa.array([r.model for r in rows], pa.string()),
            "folder_a": pa.array([r.folder_a for r in rows], pa.int64()),
            "folder_b": pa.array([r.folder_b for r in rows], pa.int64()),
            "hash": pa.array([r.hash for r in rows], pa.string()),
            "file_id": pa.array([r.file_id for r in rows], pa.int64()),
            "rank_score": pa.array([r.rank_score for r in rows], pa.float64()),
            "strength": pa.array([r.strength for r in rows], pa.float64()),
            "images": pa.array([r.images for r in rows], pa.int32()),
            "evidence": pa.array([r.evidence for r in rows], pa.string()),
            "class_a_name": pa.array([r.class_a_name for r in rows], pa.string()),
            "class_b_name": pa.array([r.class_b_name for r in rows], pa.string()),
            "path_name": pa.array([r.path_name for r in rows], pa.string()),
        }
    )
    evidence = pa.table(
        {
            "id": pa.array([p[0] for p in pairs], pa.string()),
            "a": pa.array([p[1] for p in pairs], pa.int64()),
            "b": pa.array([p[2] for p in pairs], pa.int64()),
            "score": pa.array([p[3] for p in pairs], pa.float32()),
        }
    )
    con.register("new_suggestions", table)
    con.register("new_suggestion_pairs", evidence)
    try:
        con.execute("UPDATE suggestion_rows SET active = false")
        con.execute(
            """INSERT INTO suggestion_rows
               SELECT id, kind, model, folder_a, folder_b, hash, file_id, rank_score, strength,
                      images, evidence, class_a_name, class_b_name, path_name, true, $now, $now
               FROM new_suggestions
               ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, model = excluded.model,
                   folder_a = excluded.folder_a, folder_b = excluded.folder_b,
                   hash = excluded.hash, file_id = excluded.file_id,
                   rank_score = excluded.rank_score, strength = excluded.strength,
                   images = excluded.images, evidence = excluded.evidence,
                   class_a_name = excluded.class_a_name, class_b_name = excluded.class_b_name,
                   path_name = excluded.path_name, active = true, last_seen = excluded.last_seen""",
            {"now": now},
        )
        con.execute(
            """DELETE FROM suggestion_rows WHERE NOT active
               AND id NOT IN (SELECT id FROM suggestion_decisions)"""
        )
        con.execute("DELETE FROM suggestion_pairs")
        con.execute("INSERT INTO suggestion_pairs SELECT id, a, b, score FROM new_suggestion_pairs")
    finally:
        con.unregister("new_suggestions")
        con.unregister("new_suggestion_pairs")
    for sid, why in reopen.items():
        con.execute(
            """UPDATE suggestion_decisions SET reopened_at = ?, reopened_why = ?
               WHERE id = ? AND reopened_at IS NULL""",
            [now, why, sid],
        )


_VIEW_COLUMNS = """id, kind, rank_score, class_a, class_b, path, evidence, state, hash, images,
    decided_by, target"""


def queue(
    con: duckdb.DuckDBPyConnection,
    state: str = State.OPEN,
    kinds: Sequence[str] = (),
    limit: int = 20,
    offset: int = 0,
) -> list[Suggestion]:
    """Suggestions in one state, best first (state 'all': every one)."""
    where, params = _filter(state, kinds)
    rows = con.execute(
        f"""SELECT {_VIEW_COLUMNS} FROM suggestions {where}
            ORDER BY rank_score DESC, id LIMIT {int(limit)} OFFSET {int(offset)}""",
        params,
    ).fetchall()
    return [Suggestion(*r) for r in rows]


def count(
    con: duckdb.DuckDBPyConnection, state: str = State.OPEN, kinds: Sequence[str] = ()
) -> int:
    where, params = _filter(state, kinds)
    row = first_row(con, f"SELECT count(*) FROM suggestions {where}", params)
    return int(row[0]) if row else 0


def _filter(state: str, kinds: Sequence[str]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if state != "all":
        clauses.append("state = ?")
        params.append(state)
    if kinds:
        clauses.append("kind IN (SELECT unnest(?))")
        params.append(list(kinds))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def get(con: duckdb.DuckDBPyConnection, sid: str) -> Suggestion | None:
    row = first_row(con, f"SELECT {_VIEW_COLUMNS} FROM suggestions WHERE id = ?", [sid])
    return None if row is None else Suggestion(*row)


def folder_paths(con: duckdb.DuckDBPyConnection, klass: str, limit: int = 12) -> list[str]:
    """Some images of a folder, for a card: those with a face first."""
    return [
        r[0]
        for r in con.execute(
            f"""SELECT path FROM images WHERE class = ?
               ORDER BY (status IN ('{Status.OK}', '{Status.MULTI_FACE}')) DESC, path LIMIT ?""",
            [klass, limit],
        ).fetchall()
    ]


def decide(
    con: duckdb.DuckDBPyConnection,
    sid: str,
    decision: str,
    who: str,
    now: datetime,
    target: str | None = None,
    note: str | None = None,
) -> None:
    """Record a decision on a suggestion, and on the image pairs under it: accepting a
    same_person or misfiled suggestion says its pairs are one person; rejecting it says
    they are different people."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}: one of {', '.join(DECISIONS)}")
    row = first_row(con, "SELECT rank_score, images, kind FROM suggestion_rows WHERE id = ?",
                    [sid])
    if row is None:
        raise KeyError(f"no suggestion {sid!r}")
    con.execute(
        """INSERT OR REPLACE INTO suggestion_decisions
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)""",
        [sid, decision, row[0], row[1], target, note, who, now],
    )
    pair_decision = {Decision.ACCEPTED: Decision.SAME, Decision.REJECTED: Decision.DIFFERENT}.get(
        Decision(decision)
    )
    if pair_decision is None or row[2] == Kind.STRANGER:
        return
    from store import review  # the owner of the `decisions` table

    for hash_a, hash_b in con.execute(
        """SELECT fa.hash, fb.hash FROM suggestion_pairs p
           JOIN files fa ON fa.id = p.a JOIN files fb ON fb.id = p.b
           WHERE p.id = ? AND fa.hash IS NOT NULL AND fb.hash IS NOT NULL""",
        [sid],
    ).fetchall():
        if hash_a != hash_b:
            review.record_decision(
                con, hash_a, hash_b, pair_decision, who, note=f"from suggestion {sid}", now=now
            )


def undo(con: duckdb.DuckDBPyConnection, sid: str) -> None:
    """Forget the decision on a suggestion: it is open again (pair decisions it made
    are left: a person can clear them on the pairs page)."""
    con.execute("DELETE FROM suggestion_decisions WHERE id = ?", [sid])


def folder_sizes(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, int]:
    """Images per folder, for the folders named (a folder with none is left out)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    return dict(
        con.execute(
            "SELECT class, count(*) FROM files WHERE class IN (SELECT unnest(?)) GROUP BY 1",
            [wanted],
        ).fetchall()
    )


def copies(con: duckdb.DuckDBPyConnection, content: str) -> list[str]:
    """Every path holding this content, first by path (a duplicate's first copy)."""
    return [
        r[0]
        for r in con.execute(
            "SELECT path FROM files WHERE hash = ? ORDER BY path", [content]
        ).fetchall()
    ]
