"""Suggested mistakes and the decisions on them: `suggestion_rows`, `suggestion_pairs`,
`suggestion_decisions`, and the `suggestions` view over them.

A suggestion's id is stable: `<prefix>:<part>:<part>`, spelled by its kind
(daemon/kinds/<kind>.py) after the `Rules` of its `Kind` member (store/vocab.py), which
also say which parts are folder ids. Folders have ids that survive renames
(store/folders.py) and images are known by content, so an id survives rescans, moves,
folder renames, restarts and a model switch, and a decision keyed by it does too. What
the store does with a kind (a decision's image pairs, the backup's folder ids) it reads
off those `Rules`: it names no kind itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa

from store import decisions
from store.sql import Merged, first_row, merge_counts, records, registered, rows_as
from store.vocab import SUGGESTION_DECISIONS, Decision, Kind, State

# The queue's floor: suggestions less likely than this to be a real mistake are not kept
# (the daemon's kinds drop them; the Review page's confidence filter starts here).
CONFIDENCE_FLOOR = 0.02

MIGRATIONS: dict[int, list[str]] = {
    # Suggested mistakes as last computed. Decided ones stay after they stop being
    # computed (active = false), so the view keeps every decision a reviewer made.
    2: [
        """CREATE TABLE IF NOT EXISTS suggestion_rows (
            id VARCHAR PRIMARY KEY,
            kind VARCHAR NOT NULL,
            model VARCHAR,
            folder_a BIGINT, folder_b BIGINT,
            hash VARCHAR, file_id BIGINT,
            rank_score DOUBLE NOT NULL,
            strength DOUBLE,
            images INTEGER,
            evidence VARCHAR NOT NULL,
            class_a_name VARCHAR, class_b_name VARCHAR, path_name VARCHAR,
            active BOOLEAN NOT NULL DEFAULT true,
            first_seen TIMESTAMP NOT NULL, last_seen TIMESTAMP NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS suggestion_pairs (
            id VARCHAR NOT NULL, a BIGINT NOT NULL, b BIGINT NOT NULL, score FLOAT NOT NULL)""",
        # Decisions on suggestions, keyed by the suggestion id (folders by identity, images
        # by content): they survive rescans, moves, renames, restarts and a model switch.
        """CREATE TABLE IF NOT EXISTS suggestion_decisions (
            id VARCHAR PRIMARY KEY,
            decision VARCHAR NOT NULL,
            rank_score DOUBLE, images INTEGER,
            target VARCHAR, note VARCHAR,
            decided_by VARCHAR, decided_at TIMESTAMP NOT NULL,
            reopened_at TIMESTAMP, reopened_why VARCHAR)""",
    ],
}

# README.md documents both views' columns.
VIEWS = [
    f"""CREATE OR REPLACE VIEW suggestions AS
        SELECT s.id, s.kind, s.rank_score,
               coalesce(fa.name, s.class_a_name) AS class_a,
               coalesce(fb.name, s.class_b_name) AS class_b,
               coalesce(f.path, s.path_name) AS path,
               s.evidence,
               CASE WHEN d.decision IS NULL OR d.reopened_at IS NOT NULL THEN '{State.OPEN}'
                    ELSE d.decision END AS state,
               s.model, s.hash, s.images, s.active, s.first_seen, s.last_seen,
               d.decided_by, d.decided_at, d.target, d.reopened_why
        FROM suggestion_rows s
        LEFT JOIN folders fa ON fa.id = s.folder_a
        LEFT JOIN folders fb ON fb.id = s.folder_b
        LEFT JOIN files f ON f.id = s.file_id
        LEFT JOIN suggestion_decisions d ON d.id = s.id
        WHERE s.active OR d.decision IS NOT NULL""",
    """CREATE OR REPLACE VIEW suggestion_evidence AS
        SELECT p.id, fa.path AS path_a, fa.class AS class_a, fb.path AS path_b,
               fb.class AS class_b, p.score
        FROM suggestion_pairs p
        JOIN files fa ON fa.id = p.a
        JOIN files fb ON fb.id = p.b""",
]


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
    return {
        sid: PastDecision(
            decision=decision,
            rank_score=rank_score,
            images=images,
            decided_at=decided_at,
            reopened=bool(reopened),
        )
        for sid, decision, rank_score, images, decided_at, reopened in rows
    }


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
            """INSERT INTO suggestion_rows (id, kind, model, folder_a, folder_b, hash, file_id,
                   rank_score, strength, images, evidence, class_a_name, class_b_name,
                   path_name, active, first_seen, last_seen)
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
        con.execute("""INSERT INTO suggestion_pairs (id, a, b, score)
               SELECT id, a, b, score FROM new_suggestion_pairs""")
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
    min_confidence: float = 0.0,
) -> list[Suggestion]:
    """Suggestions in one state, best first (state 'all': every one), at or above a
    confidence."""
    where, params = _filter(state, kinds, min_confidence)
    return rows_as(
        Suggestion,
        con,
        f"""SELECT {_VIEW_COLUMNS} FROM suggestions {where}
            ORDER BY rank_score DESC, id LIMIT {int(limit)} OFFSET {int(offset)}""",
        params,
    )


def count(
    con: duckdb.DuckDBPyConnection,
    state: str = State.OPEN,
    kinds: Sequence[str] = (),
    min_confidence: float = 0.0,
) -> int:
    where, params = _filter(state, kinds, min_confidence)
    row = first_row(con, f"SELECT count(*) FROM suggestions {where}", params)
    return int(row[0]) if row else 0


def _filter(state: str, kinds: Sequence[str], min_confidence: float = 0.0) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if min_confidence > 0:
        clauses.append("rank_score >= ?")
        params.append(float(min_confidence))
    if state != "all":
        clauses.append("state = ?")
        params.append(state)
    if kinds:
        clauses.append("kind IN (SELECT unnest(?))")
        params.append(list(kinds))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def get(con: duckdb.DuckDBPyConnection, sid: str) -> Suggestion | None:
    rows = rows_as(Suggestion, con, f"SELECT {_VIEW_COLUMNS} FROM suggestions WHERE id = ?", [sid])
    return rows[0] if rows else None


def decide(
    con: duckdb.DuckDBPyConnection,
    sid: str,
    decision: str,
    who: str,
    now: datetime,
    target: str | None = None,
    note: str | None = None,
) -> None:
    """Record a decision on a suggestion, and on the image pairs under it: what its kind's
    `Rules` (store/vocab.py) say accepting (or confirming) and rejecting mean for them,
    and when (one person, different people, or nothing)."""
    if decision not in SUGGESTION_DECISIONS:
        raise ValueError(
            f"unknown decision {decision!r}: one of {', '.join(map(str, SUGGESTION_DECISIONS))}"
        )
    row = first_row(
        con,
        """SELECT s.rank_score, s.images, s.kind, coalesce(f.name, s.class_b_name)
           FROM suggestion_rows s LEFT JOIN folders f ON f.id = s.folder_b WHERE s.id = ?""",
        [sid],
    )
    if row is None:
        raise KeyError(f"no suggestion {sid!r}")
    # Before anything is written: a kind the vocabulary does not know fails here, loudly.
    rules = Kind(row[2]).rules
    con.execute(
        """INSERT OR REPLACE INTO suggestion_decisions (id, decision, rank_score, images,
               target, note, decided_by, decided_at, reopened_at, reopened_why)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)""",
        [sid, str(decision), row[0], row[1], target, note, who, now],
    )
    pair_decision = {
        Decision.ACCEPTED: rules.accepted,
        Decision.CONFIRMED: rules.accepted,
        Decision.REJECTED: rules.rejected,
    }.get(Decision(decision))
    if pair_decision is None:
        return
    if decision != Decision.REJECTED and rules.into_b_only and target != row[3]:
        return

    for hash_a, hash_b in con.execute(
        """SELECT fa.hash, fb.hash FROM suggestion_pairs p
           JOIN files fa ON fa.id = p.a JOIN files fb ON fb.id = p.b
           WHERE p.id = ? AND fa.hash IS NOT NULL AND fb.hash IS NOT NULL""",
        [sid],
    ).fetchall():
        if hash_a != hash_b:
            decisions.record_decision(
                con, hash_a, hash_b, pair_decision, who, note=f"from suggestion {sid}", now=now
            )


def undo(con: duckdb.DuckDBPyConnection, sid: str) -> None:
    """Forget the decision on a suggestion: it is open again (pair decisions it made
    are left: a person can clear them on the pairs page)."""
    con.execute("DELETE FROM suggestion_decisions WHERE id = ?", [sid])


# -- backup (store/backup.py) ------------------------------------------------------------


# Where a suggestion id holds folder ids: its kind's `Rules.folders` (store/vocab.py).
# Folder ids are the store's own: a backup restored into a store whose folders got other
# ids (built in another order) has its ids translated, folder by name.
@cache
def _kinds_by_prefix() -> dict[str, Kind]:
    return {kind.rules.prefix: kind for kind in Kind}


def _folder_parts(parts: list[str]) -> tuple[int, ...]:
    kind = _kinds_by_prefix().get(parts[0])
    if kind is None:
        return ()
    return tuple(i for i in kind.rules.folders if i < len(parts) and parts[i].isdigit())


def id_folders(sid: str) -> list[int]:
    """The folder ids a suggestion id names ([] for an id of another shape)."""
    parts = sid.split(":")
    where = _folder_parts(parts)
    if len(parts) != 3:
        return []
    return [int(parts[i]) for i in where]


def with_folders(sid: str, mapping: dict[int, int]) -> str:
    """The id with its folder ids translated by `mapping` (ids it lacks stay)."""
    if not id_folders(sid):
        return sid
    parts = sid.split(":")
    for i in _folder_parts(parts):
        parts[i] = str(mapping.get(int(parts[i]), int(parts[i])))
    return _kinds_by_prefix()[parts[0]].rules.id(*parts[1:])


_DECISION_FIELDS = (
    "id",
    "decision",
    "rank_score",
    "images",
    "target",
    "note",
    "decided_by",
    "decided_at",
    "reopened_at",
    "reopened_why",
)
# What the `suggestions` view shows of a decided suggestion: restored with its decision,
# so a decided suggestion no scan computes any more (its fix made it moot) stays listed.
_ROW_FIELDS = (
    "kind",
    "model",
    "hash",
    "folder_a",
    "folder_b",
    "rank_score",
    "strength",
    "images",
    "evidence",
    "class_a",
    "class_b",
    "path",
    "first_seen",
    "last_seen",
)


def export_decided(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every suggestion decision, oldest first, each with its suggestion as the view
    shows it (`suggestion`; None when the store holds no row for it)."""
    rows = records(
        con,
        f"""SELECT {", ".join("d." + c for c in _DECISION_FIELDS)},
                   s.id AS row_id, s.kind, s.model, s.hash, s.folder_a, s.folder_b,
                   s.rank_score AS row_rank_score, s.strength, s.images AS row_images,
                   s.evidence, coalesce(fa.name, s.class_a_name) AS class_a,
                   coalesce(fb.name, s.class_b_name) AS class_b,
                   coalesce(f.path, s.path_name) AS path, s.first_seen, s.last_seen
            FROM suggestion_decisions d
            LEFT JOIN suggestion_rows s ON s.id = d.id
            LEFT JOIN folders fa ON fa.id = s.folder_a
            LEFT JOIN folders fb ON fb.id = s.folder_b
            LEFT JOIN files f ON f.id = s.file_id
            ORDER BY d.decided_at, d.id""",
    )
    out = []
    for r in rows:
        row = {k: r[k] for k in _ROW_FIELDS}
        row["rank_score"], row["images"] = r["row_rank_score"], r["row_images"]
        out.append(
            {
                **{k: r[k] for k in _DECISION_FIELDS},
                "suggestion": None if r["row_id"] is None else row,
            }
        )
    return out


# The latest change to a suggestion decision: its making, or its reopening.
_CHANGED = "greatest({t}.decided_at, coalesce({t}.reopened_at, {t}.decided_at))"


def merge_decided(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> Merged:
    """Restore suggestion decisions by id (folder ids already this store's): one the
    store lacks is added, one the store changed later than the backup is kept. A decided
    suggestion the store holds no row for gets the backup's, inactive: the view lists it
    as decided, and the daemon makes it active again if it still finds it."""
    latest: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["id"] not in latest or _changed(r) > _changed(latest[r["id"]]):
            latest[r["id"]] = r
    if not latest:
        return Merged()
    incoming = list(latest.values())
    decided = pa.table(
        {
            "id": pa.array([r["id"] for r in incoming], pa.string()),
            "decision": pa.array([str(r["decision"]) for r in incoming], pa.string()),
            "rank_score": pa.array([r.get("rank_score") for r in incoming], pa.float64()),
            "images": pa.array([r.get("images") for r in incoming], pa.int32()),
            "target": pa.array([r.get("target") for r in incoming], pa.string()),
            "note": pa.array([r.get("note") for r in incoming], pa.string()),
            "decided_by": pa.array([r.get("decided_by") for r in incoming], pa.string()),
            "decided_at": pa.array([r["decided_at"] for r in incoming], pa.timestamp("us")),
            "reopened_at": pa.array([r.get("reopened_at") for r in incoming], pa.timestamp("us")),
            "reopened_why": pa.array([r.get("reopened_why") for r in incoming], pa.string()),
        }
    )
    store_at, file_at = _CHANGED.format(t="d"), _CHANGED.format(t="i")
    with registered(con, "incoming_decided", decided):
        merged = merge_counts(
            con,
            f"""SELECT count(*) FILTER (WHERE d.id IS NULL),
                       count(*) FILTER (WHERE {store_at} < {file_at}),
                       count(*) FILTER (WHERE {store_at} >= {file_at})
                FROM incoming_decided i LEFT JOIN suggestion_decisions d ON d.id = i.id""",
        )
        columns = ", ".join(_DECISION_FIELDS)
        con.execute(
            f"""INSERT INTO suggestion_decisions ({columns})
                SELECT {columns} FROM incoming_decided
                ON CONFLICT (id) DO UPDATE SET decision = excluded.decision,
                    rank_score = excluded.rank_score, images = excluded.images,
                    target = excluded.target, note = excluded.note,
                    decided_by = excluded.decided_by, decided_at = excluded.decided_at,
                    reopened_at = excluded.reopened_at, reopened_why = excluded.reopened_why
                WHERE {_CHANGED.format(t="suggestion_decisions")}
                    < {_CHANGED.format(t="excluded")}"""
        )
    shown = [(r["id"], r["suggestion"]) for r in incoming if r.get("suggestion")]
    if shown:
        table = pa.table(
            {
                "id": pa.array([sid for sid, _ in shown], pa.string()),
                "kind": pa.array([str(s["kind"]) for _, s in shown], pa.string()),
                "model": pa.array([s.get("model") for _, s in shown], pa.string()),
                "folder_a": pa.array([s.get("folder_a") for _, s in shown], pa.int64()),
                "folder_b": pa.array([s.get("folder_b") for _, s in shown], pa.int64()),
                "hash": pa.array([s.get("hash") for _, s in shown], pa.string()),
                "path": pa.array([s.get("path") for _, s in shown], pa.string()),
                "rank_score": pa.array([s["rank_score"] for _, s in shown], pa.float64()),
                "strength": pa.array([s.get("strength") for _, s in shown], pa.float64()),
                "images": pa.array([s.get("images") for _, s in shown], pa.int32()),
                "evidence": pa.array([s["evidence"] for _, s in shown], pa.string()),
                "class_a": pa.array([s.get("class_a") for _, s in shown], pa.string()),
                "class_b": pa.array([s.get("class_b") for _, s in shown], pa.string()),
                "first_seen": pa.array([s["first_seen"] for _, s in shown], pa.timestamp("us")),
                "last_seen": pa.array([s["last_seen"] for _, s in shown], pa.timestamp("us")),
            }
        )
        with registered(con, "incoming_suggestions", table):
            con.execute(
                """INSERT INTO suggestion_rows (id, kind, model, folder_a, folder_b, hash,
                       file_id, rank_score, strength, images, evidence, class_a_name,
                       class_b_name, path_name, active, first_seen, last_seen)
                   SELECT i.id, i.kind, i.model, i.folder_a, i.folder_b, i.hash,
                          (SELECT min(f.id) FROM files f WHERE f.path = i.path), i.rank_score,
                          i.strength, i.images, i.evidence, i.class_a, i.class_b, i.path,
                          false, i.first_seen, i.last_seen
                   FROM incoming_suggestions i
                   ON CONFLICT (id) DO NOTHING"""
            )
    return merged


def _changed(r: dict[str, Any]) -> datetime:
    return max(r["decided_at"], r.get("reopened_at") or r["decided_at"])
