"""File actions taken from the dashboard, for audit and undo: the `actions` table.

Actions done together (the moves of one folder merge) share a batch number, so one undo
takes all of them back; an action that carried out a suggestion's decision names it, so
its undo reopens that suggestion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from store.clock import utcnow
from store.sql import first_row, rows_as

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
    rows = rows_as(
        ActionRow, con, f"SELECT {_COLUMNS} FROM actions WHERE id = ?", [int(action_id)]
    )
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
