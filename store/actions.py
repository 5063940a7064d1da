"""File actions taken from the dashboard, for audit and undo: the `actions` table.

Actions done together (the moves of one folder merge) share a batch number, so one undo
takes all of them back; an action that carried out a suggestion's decision names it, so
its undo reopens that suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from store.clock import utcnow
from store.sql import Merged, first_row, records, registered, rows_as

MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE SEQUENCE IF NOT EXISTS action_ids START 1",
        """CREATE TABLE IF NOT EXISTS actions (
            id BIGINT PRIMARY KEY,
            acted_at TIMESTAMP NOT NULL,
            who VARCHAR,
            action VARCHAR NOT NULL,
            src VARCHAR NOT NULL,
            dst VARCHAR NOT NULL,
            hash_a VARCHAR, hash_b VARCHAR,
            undone_at TIMESTAMP,
            undo_of BIGINT)""",
    ],
    3: [
        "ALTER TABLE actions ADD COLUMN batch BIGINT",
        "CREATE SEQUENCE IF NOT EXISTS action_batches START 1",
        "ALTER TABLE actions ADD COLUMN suggestion VARCHAR",
    ],
    # The content hash of the file an action moved: its undo moves that content back
    # only, never a file put in its place since (NULL for actions logged before).
    5: ["ALTER TABLE actions ADD COLUMN IF NOT EXISTS hash VARCHAR"],
}

# Actions that moved a file and can be undone; "undo" rows record the undoing itself.
FILE_ACTIONS = ("move", "quarantine")


@dataclass(frozen=True)
class ActionRow:
    id: int
    acted_at: datetime
    who: str | None
    action: str
    src: str
    dst: str
    hash_a: str | None
    hash_b: str | None
    undone_at: datetime | None
    undo_of: int | None
    hash: str | None = None  # the content moved

    @property
    def undoable(self) -> bool:
        return self.action in FILE_ACTIONS and self.undone_at is None


_COLUMNS = "id, acted_at, who, action, src, dst, hash_a, hash_b, undone_at, undo_of, hash"


def log_action(
    con: duckdb.DuckDBPyConnection,
    action: str,
    src: str,
    dst: str,
    who: str,
    hashes: tuple[str, str] | None = None,
    undo_of: int | None = None,
    now: datetime | None = None,
    content: str | None = None,
) -> int:
    """Record a file action (root-relative paths, `content`: the moved file's hash);
    returns its id."""
    h1, h2 = hashes if hashes is not None else (None, None)
    row = con.execute(
        f"""INSERT INTO actions ({_COLUMNS})
            VALUES (nextval('action_ids'), $now, $who, $action, $src, $dst,
                    least($h1, $h2), greatest($h1, $h2), NULL, $undo_of, $content)
            RETURNING id""",
        {
            "now": now or utcnow(),
            "who": who,
            "action": action,
            "src": src,
            "dst": dst,
            "h1": h1,
            "h2": h2,
            "undo_of": undo_of,
            "content": content,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def mark_undone(
    con: duckdb.DuckDBPyConnection, action_id: int, now: datetime | None = None
) -> None:
    con.execute(
        "UPDATE actions SET undone_at = ? WHERE id = ? AND undone_at IS NULL",
        [now or utcnow(), action_id],
    )


def get_action(con: duckdb.DuckDBPyConnection, action_id: int) -> ActionRow | None:
    rows = rows_as(ActionRow, con, f"SELECT {_COLUMNS} FROM actions WHERE id = ?", [int(action_id)])
    return rows[0] if rows else None


def recent_actions(
    con: duckdb.DuckDBPyConnection, limit: int = 200, offset: int = 0
) -> list[ActionRow]:
    return rows_as(
        ActionRow,
        con,
        f"SELECT {_COLUMNS} FROM actions ORDER BY id DESC LIMIT ? OFFSET ?",
        [int(limit), int(offset)],
    )


def count_actions(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con, "SELECT count(*) FROM actions")
    return int(row[0]) if row else 0


def last_moves_from(con: duckdb.DuckDBPyConnection, paths: Iterable[str]) -> dict[str, ActionRow]:
    """For each path, the latest file action (not undone) that moved a file away from it:
    tells a reviewer where a file went before the daemon has caught up."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    rows = rows_as(
        ActionRow,
        con,
        f"""SELECT {_COLUMNS} FROM actions
            WHERE action IN (SELECT unnest(?)) AND undone_at IS NULL
              AND src IN (SELECT unnest(?))
            ORDER BY id""",
        [list(FILE_ACTIONS), wanted],
    )
    return {r.src: r for r in rows}


def new_batch(con: duckdb.DuckDBPyConnection) -> int:
    """A fresh batch number: the file actions logged under it are undone together."""
    row = first_row(con, "SELECT nextval('action_batches')")
    assert row is not None
    return int(row[0])


def tag_actions(
    con: duckdb.DuckDBPyConnection,
    action_ids: Sequence[int],
    batch: int | None,
    suggestion: str | None,
) -> None:
    """Mark logged actions as one batch, and as the doing of a suggestion's decision."""
    con.execute(
        "UPDATE actions SET batch = ?, suggestion = ? WHERE id IN (SELECT unnest(?))",
        [batch, suggestion, [int(i) for i in action_ids]],
    )


def action_group(con: duckdb.DuckDBPyConnection, action_id: int) -> list[ActionRow]:
    """The action and every other one of its batch, latest first (the order to undo them)."""
    return rows_as(
        ActionRow,
        con,
        f"""SELECT {_COLUMNS} FROM actions
            WHERE id = $id OR batch = (SELECT batch FROM actions WHERE id = $id)
            ORDER BY id DESC""",
        {"id": int(action_id)},
    )


def action_suggestion(con: duckdb.DuckDBPyConnection, action_id: int) -> str | None:
    """The suggestion whose decision a file action carried out, if any."""
    row = first_row(con, "SELECT suggestion FROM actions WHERE id = ?", [int(action_id)])
    return None if row is None or row[0] is None else str(row[0])


def suggestion_actions(con: duckdb.DuckDBPyConnection, sid: str) -> list[ActionRow]:
    """The file actions (not undone) that carried out the decision on a suggestion."""
    return rows_as(
        ActionRow,
        con,
        f"""SELECT {_COLUMNS} FROM actions
            WHERE suggestion = ? AND undone_at IS NULL AND action IN (SELECT unnest(?))
            ORDER BY id DESC""",
        [sid, list(FILE_ACTIONS)],
    )


# -- backup (store/backup.py) ------------------------------------------------------------

_EXPORT_COLUMNS = _COLUMNS + ", batch, suggestion"


def export_all(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The whole log, in the order it was written: each action with its batch and the
    suggestion it carried out, undos naming what they undid."""
    return records(con, f"SELECT {_EXPORT_COLUMNS} FROM actions ORDER BY id")


def _same_action(r: dict[str, Any]) -> tuple[Any, ...]:
    # An action is known by what it did and when: ids and batch numbers are the store's.
    return (r["acted_at"], r["action"], r["src"], r["dst"], r.get("who"))


def merge_actions(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> Merged:
    """Restore a backup's log (its suggestion ids already this store's): an action the
    store has is kept as the store has it; the others are added, in the backup's order,
    under this store's ids and batch numbers, with what they undid and their batches
    mapped along, so an undo from the dashboard takes a whole batch back."""
    known: dict[tuple[Any, ...], list[tuple[int, int | None]]] = {}
    for r in records(con, f"SELECT {_EXPORT_COLUMNS} FROM actions ORDER BY id"):
        known.setdefault(_same_action(r), []).append((int(r["id"]), r["batch"]))
    ids: dict[int, int] = {}  # backup's id -> this store's
    batches: dict[int, int] = {}  # backup's batch -> this store's
    fresh: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: int(r["id"])):
        there = known.get(_same_action(r))
        if there:
            store_id, batch = there.pop(0)
            ids[int(r["id"])] = store_id
            if r.get("batch") is not None and batch is not None:
                batches.setdefault(int(r["batch"]), batch)
        else:
            fresh.append(r)
    if not fresh:
        return Merged(kept=len(rows))
    new_ids = sorted(
        int(v[0])
        for v in con.execute("SELECT nextval('action_ids') FROM range(?)", [len(fresh)]).fetchall()
    )
    for r, new_id in zip(fresh, new_ids, strict=True):
        ids[int(r["id"])] = new_id
        if r.get("batch") is not None and int(r["batch"]) not in batches:
            batches[int(r["batch"])] = new_batch(con)

    def mapped(value: Any, to: dict[int, int]) -> int | None:
        return None if value is None else to.get(int(value))

    table = pa.table(
        {
            "id": pa.array(new_ids, pa.int64()),
            "acted_at": pa.array([r["acted_at"] for r in fresh], pa.timestamp("us")),
            "who": pa.array([r.get("who") for r in fresh], pa.string()),
            "action": pa.array([r["action"] for r in fresh], pa.string()),
            "src": pa.array([r["src"] for r in fresh], pa.string()),
            "dst": pa.array([r["dst"] for r in fresh], pa.string()),
            "hash_a": pa.array([r.get("hash_a") for r in fresh], pa.string()),
            "hash_b": pa.array([r.get("hash_b") for r in fresh], pa.string()),
            "undone_at": pa.array([r.get("undone_at") for r in fresh], pa.timestamp("us")),
            "undo_of": pa.array([mapped(r.get("undo_of"), ids) for r in fresh], pa.int64()),
            "batch": pa.array([mapped(r.get("batch"), batches) for r in fresh], pa.int64()),
            "suggestion": pa.array([r.get("suggestion") for r in fresh], pa.string()),
            # What the action moved (schema 5): an undo checks it; older backups lack it.
            "hash": pa.array([r.get("hash") for r in fresh], pa.string()),
        }
    )
    with registered(con, "incoming_actions", table):
        con.execute(
            f"""INSERT INTO actions ({_EXPORT_COLUMNS})
                SELECT {_EXPORT_COLUMNS} FROM incoming_actions"""
        )
    return Merged(new=len(fresh), kept=len(rows) - len(fresh))
