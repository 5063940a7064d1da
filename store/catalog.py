"""Files: what the daemon knows about each image on disk (the `files` table), and the
`images` and `hubs` views over it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from store.meta import MODEL_SQL
from store.sql import first_row, rows_as

MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE SEQUENCE IF NOT EXISTS file_ids START 1",
        # One row per file on disk. `dirty` marks files whose pairs must be recomputed: it
        # is cleared in the same transaction that writes those pairs, so a crash loses
        # nothing.
        """CREATE TABLE IF NOT EXISTS files (
            id BIGINT PRIMARY KEY,
            path VARCHAR NOT NULL UNIQUE,
            class VARCHAR NOT NULL,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            hash VARCHAR,
            first_seen TIMESTAMP NOT NULL,
            last_seen TIMESTAMP NOT NULL,
            dirty BOOLEAN NOT NULL DEFAULT true,
            candidates INTEGER NOT NULL DEFAULT 0)""",
    ],
    # Folders with an identity (store/folders.py fills `folders` first), and the face that
    # stands for the image in its folder (under the active model). Every file is compared
    # again: pairs and lists are rebuilt under version 2's calibration.
    2: [
        "ALTER TABLE files ADD COLUMN folder_id BIGINT",
        "UPDATE files SET folder_id = (SELECT id FROM folders WHERE folders.name = files.class)",
        "ALTER TABLE files ADD COLUMN face SMALLINT DEFAULT 0",
        "UPDATE files SET dirty = true",
    ],
}

# Users query the views with SQL (README.md documents them): their columns are a stable
# interface, whatever the tables behind them become.
VIEWS = [
    f"""CREATE OR REPLACE VIEW images AS
        SELECT f.path, f.class, e.status, e.message, e.faces, f.hash,
               fc.box_left, fc.box_top, fc.box_right, fc.box_bottom, e.whole_image,
               e.width, e.height, e.model, f.size, f.first_seen, f.last_seen,
               f.candidates, f.id AS image_id, f.face
        FROM files f
        LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = {MODEL_SQL}
        LEFT JOIN faces fc ON fc.hash = f.hash AND fc.model = e.model
            AND fc.face = coalesce(f.face, 0)""",
    # A hub matches far more images than is typical here. "More than the cap" alone stops
    # meaning anything at scale: at 57,637 faces the calibrated threshold lets ~860
    # candidates through for an ordinary face, so every image would be over a cap of 20.
    """CREATE OR REPLACE VIEW hubs AS
        SELECT path, class, candidates FROM images
        WHERE candidates > CAST((SELECT value FROM meta WHERE key = 'max_pairs_per_image')
                                AS INTEGER)
          AND candidates > 4 * (SELECT coalesce(median(candidates), 0) FROM files)""",
]


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    klass: str
    size: int
    mtime_ns: int
    hash: str | None


_FILE_ROW = "id, path, class AS klass, size, mtime_ns, hash"


def load_files(
    con: duckdb.DuckDBPyConnection, paths: Iterable[str] | None = None
) -> dict[str, FileRow]:
    """Stored files by path: all of them, or those among `paths`."""
    sql = f"SELECT {_FILE_ROW} FROM files"
    if paths is None:
        rows = rows_as(FileRow, con, sql)
    else:
        # A name that is not UTF-8 (surrogate-escaped bytes) cannot be stored, so it is not
        # stored: asking would only raise UnicodeEncodeError for the whole batch.
        wanted = pa.table({"p": pa.array([p for p in paths if _storable(p)], pa.string())})
        con.register("wanted_paths", wanted)
        try:
            rows = rows_as(FileRow, con, sql + " WHERE path IN (SELECT p FROM wanted_paths)")
        finally:
            con.unregister("wanted_paths")
    return {r.path: r for r in rows}


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load_files_under(con: duckdb.DuckDBPyConnection, prefix: str) -> dict[str, FileRow]:
    """Stored files at or below a folder (the daemon's view of a moved or deleted folder)."""
    if not _storable(prefix):
        return {}
    rows = rows_as(
        FileRow,
        con,
        f"SELECT {_FILE_ROW} FROM files WHERE starts_with(path, ?)",
        [prefix.rstrip("/") + "/"],
    )
    return {r.path: r for r in rows}


def add_files(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[str, str, int, int, str]],
    now: datetime,
) -> None:
    """Insert (path, class, size, mtime_ns, hash) as new, dirty files."""
    if not rows:
        return
    table = pa.table(
        {
            "path": [r[0] for r in rows],
            "class": [r[1] for r in rows],
            "size": pa.array([r[2] for r in rows], pa.int64()),
            "mtime_ns": pa.array([r[3] for r in rows], pa.int64()),
            "hash": [r[4] for r in rows],
        }
    )
    con.register("new_files", table)
    try:
        # A path already stored (another writer got there first) is updated, not doubled.
        con.execute(
            """INSERT INTO files (id, path, class, size, mtime_ns, hash, first_seen, last_seen,
                                  dirty, candidates)
               SELECT nextval('file_ids'), path, class, size, mtime_ns, hash, $now, $now, true, 0
               FROM new_files
               ON CONFLICT (path) DO UPDATE SET class = excluded.class, size = excluded.size,
                   mtime_ns = excluded.mtime_ns, hash = excluded.hash,
                   last_seen = excluded.last_seen, dirty = true""",
            {"now": now},
        )
    finally:
        con.unregister("new_files")


def update_files(
    con: duckdb.DuckDBPyConnection,
    rows: Sequence[tuple[int, str, str, int, int, str | None, bool]],
    now: datetime,
) -> None:
    """Update (id, path, class, size, mtime_ns, hash, dirty) of stored files.

    dirty=True (moves between classes, new content) makes the next compare redo the file's
    matches; dirty=False keeps its pairs (a touched file, a move within its class).
    """
    if not rows:
        return
    table = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "path": pa.array([r[1] for r in rows], pa.string()),
            "class": pa.array([r[2] for r in rows], pa.string()),
            "size": pa.array([r[3] for r in rows], pa.int64()),
            "mtime_ns": pa.array([r[4] for r in rows], pa.int64()),
            "hash": pa.array([r[5] for r in rows], pa.string()),
            "dirty": pa.array([r[6] for r in rows], pa.bool_()),
        }
    )
    con.register("file_updates", table)
    try:
        # Paths may swap between rows of one batch (a rename chain): park them first on
        # names no relative path can have, so UNIQUE(path) never sees one path twice.
        con.execute(
            """UPDATE files SET path = '/moving/' || CAST(id AS VARCHAR)
               WHERE id IN (SELECT id FROM file_updates)"""
        )
        con.execute(
            """UPDATE files SET path = u.path, class = u.class, size = u.size,
                   mtime_ns = u.mtime_ns, hash = coalesce(u.hash, files.hash),
                   last_seen = $now, dirty = files.dirty OR u.dirty
               FROM file_updates u WHERE files.id = u.id""",
            {"now": now},
        )
    finally:
        con.unregister("file_updates")


@dataclass
class AllFiles:
    ids: np.ndarray  # ascending
    paths: list[str]
    classes: list[str]
    hashes: list[str | None]
    folder_ids: np.ndarray  # -1 where not assigned yet
    # When each file was first stored (epoch microseconds): a move keeps it, a copy gets
    # its own. A duplicate's original is the earlier copy when the faces cannot tell.
    first_seen: np.ndarray | None = None


def all_files(con: duckdb.DuckDBPyConnection) -> AllFiles:
    table = con.sql(
        """SELECT id, path, class, hash, coalesce(folder_id, -1) AS folder_id,
                  epoch_us(first_seen) AS first_seen
           FROM files ORDER BY id"""
    ).to_arrow_table()
    return AllFiles(
        table.column("id").to_numpy().astype(np.int64),
        table.column("path").to_pylist(),
        table.column("class").to_pylist(),
        table.column("hash").to_pylist(),
        table.column("folder_id").to_numpy().astype(np.int64),
        table.column("first_seen").to_numpy().astype(np.int64),
    )


@dataclass
class FileFlags:
    """The columns of every file that each refresh writes (and so reads again), by id."""

    ids: np.ndarray  # ascending
    dirty: np.ndarray  # bool
    candidates: np.ndarray  # int64
    chosen: np.ndarray  # int16: the standing face
    folder_ids: np.ndarray  # int64, -1 where not assigned yet
    last_seen: int | None  # the latest last_seen (epoch microseconds), None: no files


def file_flags(con: duckdb.DuckDBPyConnection) -> FileFlags:
    """Numbers only, no strings: ~0.1 s at 1 M files, where the paths, classes and
    contents as Python strings took seconds (a daemon keeps those: daemon/snapshot.py)."""
    table = con.sql(
        """SELECT id, dirty, candidates, coalesce(face, 0) AS chosen,
                  coalesce(folder_id, -1) AS folder_id FROM files"""
    ).to_arrow_table()
    ids = table.column("id").to_numpy().astype(np.int64)
    order = np.argsort(ids, kind="stable") if len(ids) and (np.diff(ids) < 0).any() else None

    def column(name: str, dtype: type) -> np.ndarray:
        arr = table.column(name).to_numpy(zero_copy_only=False).astype(dtype)
        return arr if order is None else arr[order]

    row = first_row(con, "SELECT max(epoch_us(last_seen)) FROM files")
    return FileFlags(
        ids if order is None else ids[order],
        column("dirty", bool),
        column("candidates", np.int64),
        column("chosen", np.int16),
        column("folder_id", np.int64),
        None if row is None or row[0] is None else int(row[0]),
    )


def set_standing_faces(con: duckdb.DuckDBPyConnection, ids: np.ndarray, faces: np.ndarray) -> None:
    """Record which face stands for each of these files in its folder."""
    table = pa.table(
        {"id": pa.array(np.asarray(ids, np.int64)), "face": pa.array(np.asarray(faces, np.int16))}
    )
    con.register("standing_faces", table)
    try:
        con.execute("UPDATE files SET face = s.face FROM standing_faces s WHERE files.id = s.id")
    finally:
        con.unregister("standing_faces")


def _register(con: duckdb.DuckDBPyConnection, name: str, **columns: pa.Array) -> None:
    con.register(name, pa.table(columns))


def set_candidates(con: duckdb.DuckDBPyConnection, ids: np.ndarray, counts: np.ndarray) -> None:
    """How many matches at or above the threshold each file had before the cap."""
    _register(
        con,
        "new_counts",
        id=pa.array(np.asarray(ids, np.int64)),
        n=pa.array(np.asarray(counts, np.int64)),
    )
    try:
        con.execute("UPDATE files SET candidates = c.n FROM new_counts c WHERE files.id = c.id")
    finally:
        con.unregister("new_counts")


def set_dirty(
    con: duckdb.DuckDBPyConnection,
    dirty: bool,
    ids: Sequence[int] | np.ndarray = (),
    hashes: Sequence[str] = (),
    klass: str | None = None,
    reset_candidates: bool = False,
) -> None:
    """Mark files (by id, or by content, optionally within one class) as needing their
    matches computed again (dirty) or as done (clean)."""
    _register(
        con,
        "dirty_keys",
        id=pa.array(np.asarray(ids, np.int64)),
    )
    _register(con, "dirty_hashes", hash=pa.array(list(hashes), pa.string()))
    extra = ", candidates = 0" if reset_candidates else ""
    try:
        con.execute(
            f"""UPDATE files SET dirty = $dirty{extra}
                WHERE (id IN (SELECT id FROM dirty_keys)
                       OR hash IN (SELECT hash FROM dirty_hashes))
                  AND ($klass IS NULL OR class = $klass)""",
            {"dirty": dirty, "klass": klass},
        )
    finally:
        con.unregister("dirty_keys")
        con.unregister("dirty_hashes")


def delete_files(con: duckdb.DuckDBPyConnection, ids: Sequence[int] | np.ndarray) -> None:
    _register(con, "gone_files", id=pa.array(np.asarray(ids, np.int64)))
    try:
        con.execute("DELETE FROM files WHERE id IN (SELECT id FROM gone_files)")
    finally:
        con.unregister("gone_files")


def set_folder_ids(
    con: duckdb.DuckDBPyConnection, ids: Sequence[int] | np.ndarray, folder_ids: np.ndarray
) -> None:
    _register(
        con,
        "file_folders",
        id=pa.array(np.asarray(ids, np.int64)),
        folder_id=pa.array(np.asarray(folder_ids, np.int64)),
    )
    try:
        con.execute(
            "UPDATE files SET folder_id = u.folder_id FROM file_folders u WHERE files.id = u.id"
        )
    finally:
        con.unregister("file_folders")


def classes_of(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(
        con.execute(
            "SELECT id, class FROM files WHERE id IN (SELECT unnest(?))", [list(ids)]
        ).fetchall()
    )


def count_files(con: duckdb.DuckDBPyConnection) -> int:
    row = first_row(con, "SELECT count(*) FROM files")
    return int(row[0]) if row else 0
