"""Encodings and their faces: the `embeddings` and `faces` tables, and nothing else.

One `embeddings` row per (content, model) says how encoding went (status, message, how
many faces the detector found, image size); one `faces` row per encoded face holds its
box and vector. Keyed by content, so a moved, copied or touched file reuses them, and by
model, so several models' encodings coexist in one store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from store import vocab
from store.catalog import set_dirty
from store.meta import bump_counter
from store.meta import model as store_model
from store.sql import Merged, merge_counts, records, registered
from store.vocab import Status

# Statuses whose faces take part in comparisons, as plain strings: spliced into SQL as a
# tuple literal.
USABLE = tuple(s.value for s in vocab.USABLE)

Box = tuple[int, int, int, int]

MIGRATIONS: dict[int, list[str]] = {
    # One row per distinct content and model: a moved, copied or touched file reuses it.
    1: [
        """CREATE TABLE IF NOT EXISTS embeddings (
            hash VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            status VARCHAR NOT NULL,
            message VARCHAR,
            faces INTEGER,
            box_left INTEGER, box_top INTEGER, box_right INTEGER, box_bottom INTEGER,
            whole_image BOOLEAN,
            width INTEGER, height INTEGER,
            vector FLOAT[],
            encoded_at TIMESTAMP NOT NULL,
            PRIMARY KEY (hash, model))""",
    ],
    # Every detected face of an image (a group photo's label means one of them), and a
    # reviewer's choice of the face that stands for an image in one folder.
    2: [
        """CREATE TABLE IF NOT EXISTS faces (
            hash VARCHAR NOT NULL,
            model VARCHAR NOT NULL,
            face SMALLINT NOT NULL,
            box_left INTEGER, box_top INTEGER, box_right INTEGER, box_bottom INTEGER,
            det_score FLOAT,
            vector FLOAT[] NOT NULL,
            PRIMARY KEY (hash, model, face))""",
        """INSERT INTO faces (hash, model, face, box_left, box_top, box_right, box_bottom,
                              det_score, vector)
            SELECT hash, model, 0, box_left, box_top, box_right, box_bottom, 0, vector
            FROM embeddings WHERE vector IS NOT NULL""",
        "ALTER TABLE embeddings DROP COLUMN vector",
        "ALTER TABLE embeddings DROP COLUMN box_left",
        "ALTER TABLE embeddings DROP COLUMN box_top",
        "ALTER TABLE embeddings DROP COLUMN box_right",
        "ALTER TABLE embeddings DROP COLUMN box_bottom",
        """CREATE TABLE IF NOT EXISTS face_picks (
            hash VARCHAR NOT NULL, model VARCHAR NOT NULL, class VARCHAR NOT NULL,
            face SMALLINT NOT NULL, picked_by VARCHAR, picked_at TIMESTAMP NOT NULL,
            PRIMARY KEY (hash, model, class))""",
    ],
}


@dataclass(frozen=True)
class FaceRow:
    box: Box | None
    vector: np.ndarray
    det_score: float = 0.0


@dataclass(frozen=True)
class EncodingRow:
    hash: str
    status: str
    message: str
    detected: int
    whole_image: bool
    width: int
    height: int
    faces: list[FaceRow] = field(default_factory=list)


@dataclass
class FaceTable:
    """Every usable face of every current file under one model, files in id order.

    File i's faces are rows face_start[i] : face_start[i] + face_count[i] of the face
    arrays, largest first (as the encoder wrote them).
    """

    ids: np.ndarray  # int64, ascending
    classes: list[str]
    hashes: list[str]
    dirty: np.ndarray  # bool
    candidates: np.ndarray  # int64
    chosen: np.ndarray  # int16: the face that stood for each file when last compared
    width: np.ndarray  # int32
    height: np.ndarray  # int32
    face_start: np.ndarray  # int64
    face_count: np.ndarray  # int64
    face_index: np.ndarray  # int16, the face number within its image
    boxes: np.ndarray  # int32 F×4 (left, top, right, bottom); -1 where unknown
    vectors: np.ndarray  # float32 F×d, raw

    def __len__(self) -> int:
        return len(self.ids)


def hashes_to_encode(con: duckdb.DuckDBPyConnection, model: str) -> list[tuple[str, str]]:
    """(hash, one path holding it) for every stored content with no encoding by `model`.

    A content whose last attempt ended in `error` (a model failure) is tried again; every
    other outcome, `no_face` and `unreadable` included, is final for that content.
    """
    return [
        (r[0], r[1])
        for r in con.execute(
            f"""SELECT f.hash, min(f.path) FROM files f
               LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = ?
               WHERE f.hash IS NOT NULL AND (e.hash IS NULL OR e.status = '{Status.ERROR}')
               GROUP BY f.hash ORDER BY min(f.path)""",
            [model],
        ).fetchall()
    ]


def still_to_encode(con: duckdb.DuckDBPyConnection, model: str, hashes: Sequence[str]) -> set[str]:
    """Those of `hashes` that `hashes_to_encode` would still name: a file holds the
    content and no encoding by `model` answers it (an `error` is tried again)."""
    if not hashes:
        return set()
    table = pa.table({"hash": pa.array(list(hashes), pa.string())})
    with registered(con, "asked_hashes", table):
        rows = con.execute(
            f"""SELECT DISTINCT a.hash FROM asked_hashes a
               JOIN files f ON f.hash = a.hash
               LEFT JOIN embeddings e ON e.hash = a.hash AND e.model = ?
               WHERE e.hash IS NULL OR e.status = '{Status.ERROR}'""",
            [model],
        ).fetchall()
    return {r[0] for r in rows}


def count_to_encode(con: duckdb.DuckDBPyConnection, model: str) -> tuple[int, int]:
    """(contents encoded by `model`, contents stored): the progress of a model switch."""
    row = con.execute(
        f"""SELECT count(DISTINCT e.hash), count(DISTINCT f.hash) FROM files f
           LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = ?
                AND e.status <> '{Status.ERROR}'
           WHERE f.hash IS NOT NULL""",
        [model],
    ).fetchall()[0]
    return int(row[0]), int(row[1])


def write_encodings(
    con: duckdb.DuckDBPyConnection, model: str, rows: Sequence[EncodingRow], now: datetime
) -> None:
    """Store encodings and their faces, mark their files for comparison, count them."""
    if not rows:
        return
    count = len(rows)
    # INSERT OR REPLACE may not see a key twice in one statement: the last one wins.
    rows = list({r.hash: r for r in rows}.values())
    # One INSERT of an Arrow table, not one per row: a row-by-row INSERT with a 128-float
    # list costs ~2.4 ms, ~140 s of main-process CPU over 57,637 new images.
    table = pa.table(
        {
            "hash": pa.array([r.hash for r in rows], pa.string()),
            "status": pa.array([r.status for r in rows], pa.string()),
            "message": pa.array([r.message for r in rows], pa.string()),
            "faces": pa.array([r.detected for r in rows], pa.int32()),
            "whole_image": pa.array([r.whole_image for r in rows], pa.bool_()),
            "width": pa.array([r.width for r in rows], pa.int32()),
            "height": pa.array([r.height for r in rows], pa.int32()),
        }
    )
    face_rows = [(r.hash, n, f) for r in rows for n, f in enumerate(r.faces)]
    boxes = [f.box or (None, None, None, None) for _, _, f in face_rows]
    faces = pa.table(
        {
            "hash": pa.array([h for h, _, _ in face_rows], pa.string()),
            "face": pa.array([n for _, n, _ in face_rows], pa.int16()),
            "box_left": pa.array([b[0] for b in boxes], pa.int32()),
            "box_top": pa.array([b[1] for b in boxes], pa.int32()),
            "box_right": pa.array([b[2] for b in boxes], pa.int32()),
            "box_bottom": pa.array([b[3] for b in boxes], pa.int32()),
            "det_score": pa.array([float(f.det_score) for _, _, f in face_rows], pa.float32()),
            "vector": pa.array(
                [np.asarray(f.vector, np.float32) for _, _, f in face_rows],
                pa.list_(pa.float32()),
            ),
        }
    )
    con.register("new_encodings", table)
    con.register("new_faces", faces)
    try:
        con.execute(
            """INSERT OR REPLACE INTO embeddings (hash, model, status, message, faces,
                                                  whole_image, width, height, encoded_at)
               SELECT hash, $model, status, message, faces, whole_image, width, height, $now
               FROM new_encodings""",
            {"model": model, "now": now},
        )
        con.execute(
            """DELETE FROM faces WHERE model = ?
               AND hash IN (SELECT hash FROM new_encodings)""",
            [model],
        )
        con.execute(
            """INSERT INTO faces (hash, model, face, box_left, box_top, box_right, box_bottom,
                                  det_score, vector)
               SELECT hash, $model, face, box_left, box_top, box_right, box_bottom, det_score,
                      vector FROM new_faces""",
            {"model": model},
        )
    finally:
        con.unregister("new_encodings")
        con.unregister("new_faces")
    set_dirty(con, True, hashes=[r.hash for r in rows])
    bump_counter(con, f"encoded:{model}", count)
    bump_counter(con, "encoded_total", count)


def _column(table, name: str, dtype: type, fill: int = 0) -> np.ndarray:
    arr = np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.nan_to_num(arr, nan=fill).astype(dtype)


def usable_files(con: duckdb.DuckDBPyConnection, model: str, only: str = "") -> pa.Table:
    """The files with a usable encoding under `model`, in id order, without their faces
    (`only`: an SQL condition on f.hash, for load_faces)."""
    return con.sql(
        f"""SELECT f.id, f.class, f.hash, f.dirty, f.candidates, coalesce(f.face, 0) AS chosen,
                   e.width, e.height
            FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = $model
            WHERE e.status IN {USABLE} {only}
            ORDER BY f.id""",
        params={"model": model},
    ).to_arrow_table()


def file_columns(con: duckdb.DuckDBPyConnection, model: str, since: int | None = None) -> pa.Table:
    """Every file's columns that only a scan, an encoding or a pick changes (id, path,
    class, hash, first_seen in epoch microseconds, and under `model` whether its content
    has a usable encoding and the image's size), in id order. `since` (epoch
    microseconds): only the files such a writer touched after then — those it marked
    dirty or saw (`last_seen`) — for a daemon that keeps the rest. (After, not from: a
    scan's rows share its transaction's time, and a store built in one go would have
    every row of its last batch read again.)"""
    where = "" if since is None else "WHERE dirty OR epoch_us(last_seen) > $since"
    # The few touched files first, then only their encodings: a join that filters after
    # took 0.37 cpu-s at 1 M files for none touched, this 0.11.
    return con.sql(
        f"""WITH f AS MATERIALIZED (
                SELECT id, path, class, hash, first_seen FROM files {where})
            SELECT f.id, f.path, f.class, f.hash, epoch_us(f.first_seen) AS first_seen,
                   coalesce(e.status IN {USABLE}, false) AS usable,
                   coalesce(e.width, 0) AS width, coalesce(e.height, 0) AS height
            FROM f LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = $model
                AND e.hash IN (SELECT hash FROM f)
            ORDER BY f.id""",
        params={"model": model} if since is None else {"model": model, "since": since},
    ).to_arrow_table()


def load_faces(
    con: duckdb.DuckDBPyConnection, model: str, hashes: Sequence[str] | None = None
) -> FaceTable:
    """Every usable face of every current file under `model` (one short read); with
    `hashes`, only of the files holding one of them (a daemon that keeps the other
    vectors in memory reads only the new ones).

    Two plain scans put together here, not one join: joining 57,637 files to their faces
    with the vectors took 0.14-0.19 s, the two scans 0.06 s (the vectors are the bulk)."""
    if hashes is None:
        files = usable_files(con, model)
        faces = con.sql(
            """SELECT hash, face, box_left, box_top, box_right, box_bottom, vector
               FROM faces WHERE model = $model""",
            params={"model": model},
        ).to_arrow_table()
    else:
        wanted = pa.table({"hash": pa.array(list(hashes), pa.string())})
        with registered(con, "wanted_hashes", wanted):
            files = usable_files(con, model, "AND f.hash IN (SELECT hash FROM wanted_hashes)")
            faces = con.sql(
                """SELECT hash, face, box_left, box_top, box_right, box_bottom, vector
                   FROM faces WHERE model = $model
                   AND hash IN (SELECT hash FROM wanted_hashes)""",
                params={"model": model},
            ).to_arrow_table()
    # One dictionary encoding of both hash columns turns hashes into small integers, so
    # sorting and matching run on ints (as strings they took longer than both scans).
    n_faces = faces.num_rows
    both = pa.concat_arrays(
        [
            faces.column("hash").combine_chunks().cast(pa.string()),
            files.column("hash").combine_chunks().cast(pa.string()),
        ]
    ).dictionary_encode()
    codes = both.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    face_code, file_code = codes[:n_faces], codes[n_faces:]
    # Sorted here, not by SQL: an ORDER BY drags every vector through the sort.
    order = np.lexsort((_column(faces, "face", np.int64), face_code))
    face_code = face_code[order]
    block_of = np.full(len(both.dictionary), -1, dtype=np.int64)
    if n_faces:
        block = np.flatnonzero(np.r_[True, face_code[1:] != face_code[:-1]])
        block_count = np.diff(np.r_[block, n_faces])
        block_of[face_code[block]] = np.arange(len(block))
    pos = block_of[file_code]
    has = pos >= 0
    keep = np.flatnonzero(has)
    if len(keep) == 0:
        empty_i = np.empty(0, np.int64)
        return FaceTable(
            empty_i,
            [],
            [],
            np.empty(0, bool),
            empty_i,
            np.empty(0, np.int16),
            np.empty(0, np.int32),
            np.empty(0, np.int32),
            empty_i,
            empty_i,
            np.empty(0, np.int16),
            np.empty((0, 4), np.int32),
            np.empty((0, 0), np.float32),
        )
    counts = block_count[pos[keep]]
    first = block[pos[keep]]
    file_hashes = files.column("hash").to_pylist()
    # Face rows of each kept file, in file order: its block's rows, one after another.
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rows = order[np.repeat(first - starts, counts) + np.arange(int(counts.sum()))]
    flat = faces.column("vector").combine_chunks()
    values = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    vectors = values.reshape(n_faces, -1)[rows]
    boxes = np.stack(
        [
            _column(faces, c, np.int32, -1)
            for c in ("box_left", "box_top", "box_right", "box_bottom")
        ],
        1,
    )[rows]
    classes = files.column("class").to_pylist()
    return FaceTable(
        ids=files.column("id").to_numpy().astype(np.int64)[keep],
        classes=[classes[i] for i in keep],
        hashes=[file_hashes[i] for i in keep],
        dirty=files.column("dirty").to_numpy(zero_copy_only=False).astype(bool)[keep],
        candidates=_column(files, "candidates", np.int64)[keep],
        chosen=_column(files, "chosen", np.int16)[keep],
        width=_column(files, "width", np.int32)[keep],
        height=_column(files, "height", np.int32)[keep],
        face_start=starts.astype(np.int64),
        face_count=counts.astype(np.int64),
        face_index=_column(faces, "face", np.int16)[rows],
        boxes=boxes,
        vectors=vectors,
    )


def dirty_unusable(con: duckdb.DuckDBPyConnection, model: str) -> list[int]:
    """Dirty files with no usable face: they must lose whatever pairs they had."""
    return [
        r[0]
        for r in con.execute(
            f"""SELECT f.id FROM files f
                LEFT JOIN embeddings e ON e.hash = f.hash AND e.model = ?
                WHERE f.dirty AND (e.hash IS NULL OR e.status NOT IN {USABLE}
                    OR NOT EXISTS (SELECT 1 FROM faces fc
                                   WHERE fc.hash = f.hash AND fc.model = e.model))""",
            [model],
        ).fetchall()
    ]


def face_picks(con: duckdb.DuckDBPyConnection, model: str) -> dict[tuple[str, str], int]:
    """A reviewer's choice of face by (content, folder)."""
    rows = con.execute(
        "SELECT hash, class, face FROM face_picks WHERE model = ?", [model]
    ).fetchall()
    return {(r[0], r[1]): int(r[2]) for r in rows}


def record_face_pick(
    con: duckdb.DuckDBPyConnection,
    hash_: str,
    klass: str,
    face: int,
    who: str,
    now: datetime,
    model: str | None = None,
) -> None:
    """Let `face` stand for the content in `klass` (under `model`, the store's by
    default); its files are compared again on the daemon's next run."""
    if model is None:
        model = store_model(con)
        if model is None:
            raise ValueError("the store has no model yet: scan first")
    con.execute(
        """INSERT OR REPLACE INTO face_picks (hash, model, class, face, picked_by, picked_at)
           VALUES (?, ?, ?, ?, ?, ?)""",
        [hash_, model, klass, face, who, now],
    )
    set_dirty(con, True, hashes=[hash_], klass=klass)
    bump_counter(con, "generation", 1)


# -- backup (store/backup.py) ------------------------------------------------------------


def export_picks(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Every face pick, oldest first, with one current path of its content in its folder
    (None when none is stored) for the reader."""
    return records(
        con,
        """SELECT p.hash, p.model, p.class, p.face, p.picked_by, p.picked_at,
                  (SELECT min(path) FROM files WHERE hash = p.hash AND class = p.class) AS path
           FROM face_picks p ORDER BY p.picked_at, p.hash, p.model, p.class""",
    )


def merge_picks(con: duckdb.DuckDBPyConnection, rows: Sequence[dict[str, Any]]) -> Merged:
    """Restore face picks (by content, model and folder): one the store lacks is added,
    one the store made later is kept. The files of every pick added or replaced are
    marked to be compared again, as after a pick in the dashboard."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["hash"], r["model"], r["class"])
        if key not in latest or r["picked_at"] > latest[key]["picked_at"]:
            latest[key] = r
    if not latest:
        return Merged()
    incoming = list(latest.values())
    table = pa.table(
        {
            "hash": pa.array([r["hash"] for r in incoming], pa.string()),
            "model": pa.array([r["model"] for r in incoming], pa.string()),
            "class": pa.array([r["class"] for r in incoming], pa.string()),
            "face": pa.array([int(r["face"]) for r in incoming], pa.int16()),
            "picked_by": pa.array([r.get("picked_by") for r in incoming], pa.string()),
            "picked_at": pa.array([r["picked_at"] for r in incoming], pa.timestamp("us")),
        }
    )
    with registered(con, "incoming_picks", table):
        merged = merge_counts(
            con,
            """SELECT count(*) FILTER (WHERE p.hash IS NULL),
                      count(*) FILTER (WHERE p.picked_at < i.picked_at),
                      count(*) FILTER (WHERE p.picked_at >= i.picked_at)
               FROM incoming_picks i LEFT JOIN face_picks p
                 ON p.hash = i.hash AND p.model = i.model AND p.class = i.class""",
        )
        changed = con.execute(
            """SELECT i.hash, i.class FROM incoming_picks i LEFT JOIN face_picks p
                 ON p.hash = i.hash AND p.model = i.model AND p.class = i.class
               WHERE p.hash IS NULL OR p.picked_at < i.picked_at"""
        ).fetchall()
        con.execute(
            """INSERT INTO face_picks (hash, model, class, face, picked_by, picked_at)
               SELECT hash, model, class, face, picked_by, picked_at FROM incoming_picks
               ON CONFLICT (hash, model, class) DO UPDATE SET face = excluded.face,
                   picked_by = excluded.picked_by, picked_at = excluded.picked_at
               WHERE face_picks.picked_at < excluded.picked_at"""
        )
    for hash_, klass in changed:
        set_dirty(con, True, hashes=[hash_], klass=klass)
    # The caller bumps the generation (once for the whole import).
    return merged
