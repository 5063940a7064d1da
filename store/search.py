"""Every stored face, ready to rank against one new face (`facelint search PHOTO`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from store.catalog import USABLE
from store.matches import load_calibration
from store.scores import Calibration
from store.sql import first_row


@dataclass(frozen=True)
class StoredFaces:
    model: str | None
    ids: np.ndarray  # file ids, int64
    # One row per file, L2-normalised: a dot product is the cosine.
    unit: np.ndarray
    calibration: Calibration | None


@dataclass(frozen=True)
class FaceInfo:
    id: int
    path: str
    klass: str
    box: tuple[int, int, int, int] | None


def stored_faces(con: duckdb.DuckDBPyConnection) -> StoredFaces:
    """Every file's usable embedding under the store's current model, in one read: ids
    and vectors only, through Arrow (no Python object per row); names are looked up for
    the few best afterwards (face_info)."""
    row = first_row(con, "SELECT value FROM meta WHERE key = 'model'")
    model = None if row is None else str(row[0])
    table = con.sql(
        f"""SELECT f.id, e.vector
            FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = $model
            WHERE e.status IN {USABLE} AND e.vector IS NOT NULL""",
        params={"model": model or ""},
    ).to_arrow_table()
    n = table.num_rows
    cal = None if model is None else load_calibration(con, model)
    if n == 0:
        return StoredFaces(model, np.empty(0, np.int64), np.empty((0, 0), np.float32), cal)
    flat = table.column("vector").combine_chunks()
    vectors = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    vectors = vectors.reshape(n, -1)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms > 0, norms, 1.0)
    return StoredFaces(model, table.column("id").to_numpy().astype(np.int64), unit, cal)


def face_info(con: duckdb.DuckDBPyConnection, ids: Sequence[int]) -> dict[int, FaceInfo]:
    """Path, folder and face box of the given files."""
    if not len(ids):
        return {}
    rows = con.execute(
        """SELECT image_id, path, class, box_left, box_top, box_right, box_bottom
           FROM images WHERE image_id IN (SELECT unnest(?))""",
        [[int(i) for i in ids]],
    ).fetchall()
    return {
        int(r[0]): FaceInfo(
            int(r[0]), r[1], r[2], None if None in r[3:7] else (r[3], r[4], r[5], r[6])
        )
        for r in rows
    }
