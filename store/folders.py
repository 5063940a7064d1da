"""Folders with an identity: the `folders` table and each file's `folder_id`.

A suggestion about two folders is keyed by their ids, not their names, so renaming a
folder carries its suggestions and decisions along (the daemon sees a folder rename as
every file moving to a new class; the folder keeps its id when most of the new name's
files came from a name that no longer exists).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import numpy as np
import pyarrow as pa

from store import catalog

MIGRATIONS: dict[int, list[str]] = {
    # Every class name stored so far becomes a folder (files take their ids next).
    2: [
        "CREATE SEQUENCE IF NOT EXISTS folder_ids START 1",
        "CREATE TABLE IF NOT EXISTS folders (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL UNIQUE)",
        """INSERT INTO folders (id, name) SELECT nextval('folder_ids'), class
            FROM (SELECT DISTINCT class FROM files ORDER BY class)""",
    ],
}


def load_folders(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    # Through Arrow: rows as Python tuples took ~0.1 s at 50,000 folders.
    table = con.sql("SELECT id, name FROM folders").to_arrow_table()
    return dict(zip(table.column("id").to_pylist(), table.column("name").to_pylist(), strict=True))


def write_folders(
    con: duckdb.DuckDBPyConnection,
    folders: dict[int, str],
    file_ids: Sequence[int] | np.ndarray,
    folder_ids: Sequence[int] | np.ndarray,
) -> None:
    """Make the folder table say `folders` (id -> name) for those ids, and set the given
    files' folder ids."""
    if folders:
        table = pa.table(
            {
                "id": pa.array(list(folders), pa.int64()),
                "name": pa.array(list(folders.values()), pa.string()),
            }
        )
        con.register("folder_rows", table)
        try:
            # A name moves between ids (a rename onto a name used before): free it first.
            con.execute(
                """DELETE FROM folders WHERE name IN (SELECT name FROM folder_rows)
                   AND id NOT IN (SELECT id FROM folder_rows)"""
            )
            con.execute(
                """INSERT INTO folders (id, name) SELECT id, name FROM folder_rows
                   ON CONFLICT (id) DO UPDATE SET name = excluded.name"""
            )
        finally:
            con.unregister("folder_rows")
    if len(file_ids):
        catalog.set_folder_ids(con, file_ids, folder_ids)


def ids_by_name(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> dict[str, int]:
    """The folder id of each name; a name the store has no folder for gets one (a backup
    restored before the scan that finds its files: the scan keeps a known name's id)."""
    have = {name: fid for fid, name in load_folders(con).items()}
    next_id = max(have.values(), default=0) + 1
    for name in sorted(set(names) - set(have)):
        con.execute("INSERT INTO folders (id, name) VALUES (?, ?)", [next_id, name])
        have[name] = next_id
        next_id += 1
    return {name: have[name] for name in names}
