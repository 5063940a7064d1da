"""The review page: what a suggestion's card shows beside the suggestion itself."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from store.vocab import USABLE


def folder_paths(con: duckdb.DuckDBPyConnection, klass: str, limit: int = 12) -> list[str]:
    """Some images of a folder, for a card: those with a face first."""
    return [
        r[0]
        for r in con.execute(
            """SELECT path FROM images WHERE class = ?
               ORDER BY (status IN (SELECT unnest(?))) DESC, path LIMIT ?""",
            [klass, [str(s) for s in USABLE], limit],
        ).fetchall()
    ]


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


def copies(con: duckdb.DuckDBPyConnection, content: str) -> list[tuple[str, str]]:
    """(path, folder) of every file holding this content, the one stored first first."""
    return [
        (r[0], r[1])
        for r in con.execute(
            "SELECT path, class FROM files WHERE hash = ? ORDER BY first_seen, id", [content]
        ).fetchall()
    ]
