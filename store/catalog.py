"""Files and their embeddings: what the daemon knows about each image on disk."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa

from store.sql import first_row

# Statuses whose embedding takes part in comparisons.
USABLE = ("ok", "multi_face")


@dataclass(frozen=True)
class FileRow:
    id: int
    path: str
    klass: str
    size: int
    mtime_ns: int
    hash: str | None


@dataclass(frozen=True)
class EmbeddingRow:
    hash: str
    status: str
    message: str
    faces: int
    box: tuple[int, int, int, int] | None
    whole_image: bool
    width: int
    height: int
    vector: np.ndarray | None


@dataclass
class Vectors:
    """Every usable embedding of the current model, one row per file."""

    ids: np.ndarray  # int64, ascending
    classes: list[str]
    vectors: np.ndarray  # float32 N×d, raw (not normalised)
    dirty: np.ndarray  # bool
    candidates: np.ndarray  # int64


def set_meta(con: duckdb.DuckDBPyConnection, **values: object) -> None:
    for key, value in values.items():
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, str(value)])


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    row = first_row(con, "SELECT value FROM meta WHERE key = ?", [key])
    return None if row is None else str(row[0])


def load_files(
    con: duckdb.DuckDBPyConnection, paths: Iterable[str] | None = None
) -> dict[str, FileRow]:
    """Stored files by path: all of them, or those among `paths`."""
    sql = "SELECT id, path, class, size, mtime_ns, hash FROM files"
    if paths is None:
        rows = con.execute(sql).fetchall()
    else:
        # A name that is not UTF-8 (surrogate-escaped bytes) cannot be stored, so it is not
        # stored: asking would only raise UnicodeEncodeError for the whole batch.
        wanted = pa.table({"p": pa.array([p for p in paths if _storable(p)], pa.string())})
        con.register("wanted_paths", wanted)
        try:
            rows = con.execute(sql + " WHERE path IN (SELECT p FROM wanted_paths)").fetchall()
        finally:
            con.unregister("wanted_paths")
    return {r[1]: FileRow(*r) for r in rows}


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
    rows = con.execute(
        "SELECT id, path, class, size, mtime_ns, hash FROM files WHERE starts_with(path, ?)",
        [prefix.rstrip("/") + "/"],
    ).fetchall()
    return {r[1]: FileRow(*r) for r in rows}


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


def hashes_to_encode(con: duckdb.DuckDBPyConnection, model: str) -> list[tuple[str, str]]:
    """(hash, one path holding it) for every stored content with no embedding of `model`.

    A content whose last attempt ended in `error` (a model failure) is tried again; every
    other outcome, `no_face` and `unreadable` included, is final for that content.
    """
    return [
        (r[0], r[1])
        for r in con.execute(
            """SELECT f.hash, min(f.path) FROM files f
               LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = ?
               WHERE f.hash IS NOT NULL AND (e.hash IS NULL OR e.status = 'error')
               GROUP BY f.hash ORDER BY min(f.path)""",
            [model],
        ).fetchall()
    ]


def write_embeddings(
    con: duckdb.DuckDBPyConnection, model: str, rows: Sequence[EmbeddingRow], now: datetime
) -> None:
    """Store encodings, mark their files for comparison, and count them (encoded_total)."""
    if not rows:
        return
    # One INSERT of an Arrow table, not one per row: a row-by-row INSERT with a 128-float
    # list costs ~2.4 ms, which is ~140 s of main-process CPU over 57,637 new images,
    # taken from the encoder processes on a two-core machine.
    count = len(rows)
    # INSERT OR REPLACE may not see a key twice in one statement: the last one wins.
    rows = list({r.hash: r for r in rows}.values())
    boxes = [r.box or (None, None, None, None) for r in rows]
    table = pa.table(
        {
            "hash": pa.array([r.hash for r in rows], pa.string()),
            "status": pa.array([r.status for r in rows], pa.string()),
            "message": pa.array([r.message for r in rows], pa.string()),
            "faces": pa.array([r.faces for r in rows], pa.int32()),
            "box_left": pa.array([b[0] for b in boxes], pa.int32()),
            "box_top": pa.array([b[1] for b in boxes], pa.int32()),
            "box_right": pa.array([b[2] for b in boxes], pa.int32()),
            "box_bottom": pa.array([b[3] for b in boxes], pa.int32()),
            "whole_image": pa.array([r.whole_image for r in rows], pa.bool_()),
            "width": pa.array([r.width for r in rows], pa.int32()),
            "height": pa.array([r.height for r in rows], pa.int32()),
            "vector": pa.array(
                [None if r.vector is None else np.asarray(r.vector, np.float32) for r in rows],
                pa.list_(pa.float32()),
            ),
        }
    )
    con.register("new_embeddings", table)
    try:
        con.execute(
            """INSERT OR REPLACE INTO embeddings
               SELECT hash, $model, status, message, faces, box_left, box_top, box_right,
                      box_bottom, whole_image, width, height, vector, $now
               FROM new_embeddings""",
            {"model": model, "now": now},
        )
        con.execute("UPDATE files SET dirty = true WHERE hash IN (SELECT hash FROM new_embeddings)")
    finally:
        con.unregister("new_embeddings")
    bump_counter(con, "encoded_total", count)


def bump_counter(con: duckdb.DuckDBPyConnection, name: str, by: int) -> None:
    con.execute(
        """INSERT INTO counters VALUES (?, ?)
           ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value""",
        [name, by],
    )


def get_counter(con: duckdb.DuckDBPyConnection, name: str) -> int:
    row = first_row(con, "SELECT value FROM counters WHERE name = ?", [name])
    return 0 if row is None else int(row[0])


def load_vectors(con: duckdb.DuckDBPyConnection, model: str) -> Vectors:
    table = con.sql(
        f"""SELECT f.id, f.class, e.vector, f.dirty, f.candidates
            FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = $model
            WHERE e.status IN {USABLE} AND e.vector IS NOT NULL
            ORDER BY f.id""",
        params={"model": model},
    ).to_arrow_table()
    n = table.num_rows
    if n == 0:
        return Vectors(
            np.empty(0, np.int64),
            [],
            np.empty((0, 0), np.float32),
            np.empty(0, bool),
            np.empty(0, np.int64),
        )
    flat = table.column("vector").combine_chunks()
    values = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    return Vectors(
        table.column("id").to_numpy().astype(np.int64),
        table.column("class").to_pylist(),
        values.reshape(n, -1),
        table.column("dirty").to_numpy(zero_copy_only=False).astype(bool),
        table.column("candidates").to_numpy().astype(np.int64),
    )


def dirty_unusable(con: duckdb.DuckDBPyConnection, model: str) -> list[int]:
    """Dirty files with no usable embedding: they must lose whatever pairs they had."""
    return [
        r[0]
        for r in con.execute(
            f"""SELECT f.id FROM files f
                LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = ?
                WHERE f.dirty AND (e.hash IS NULL OR e.status NOT IN {USABLE}
                                   OR e.vector IS NULL)""",
            [model],
        ).fetchall()
    ]


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


def record_run(
    con: duckdb.DuckDBPyConnection,
    started_at: datetime,
    finished_at: datetime,
    kind: str,
    root: str,
    figures: dict[str, int | bool],
) -> None:
    """One row in `runs` per scan or reconcile: the history the status page shows."""
    con.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            started_at,
            finished_at,
            kind,
            root,
            figures["images"],
            figures["encoded"],
            figures["reused"],
            figures["removed"],
            figures["failed"],
            figures["pairs"],
            figures["full_compare"],
        ],
    )
