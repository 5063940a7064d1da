"""Every stored face, ready to rank against one new face (`facelint search PHOTO`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np

from store.matches import load_calibration
from store.meta import model as store_model
from store.scores import Calibration
from store.sql import records
from store.vectors import normalise
from store.vocab import USABLE


@dataclass(frozen=True)
class StoredFaces:
    model: str | None
    ids: np.ndarray  # file id of each face row, int64 (a group photo has several rows)
    faces: np.ndarray  # the face's number within its image
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
    """Every face of every file under the store's current model (a person may be the
    bystander in a photo filed elsewhere), in one read: ids and vectors only, through
    Arrow (no Python object per row); names are looked up for the few best afterwards
    (face_info)."""
    model = store_model(con)
    table = con.sql(
        """SELECT f.id, fc.face, fc.vector
            FROM files f JOIN embeddings e ON e.hash = f.hash AND e.model = $model
            JOIN faces fc ON fc.hash = f.hash AND fc.model = $model
            WHERE e.status IN (SELECT unnest($usable))""",
        params={"model": model or "", "usable": [str(s) for s in USABLE]},
    ).to_arrow_table()
    n = table.num_rows
    cal = None if model is None else load_calibration(con, model)
    if n == 0:
        empty = np.empty(0, np.int64)
        return StoredFaces(model, empty, empty, np.empty((0, 0), np.float32), cal)
    flat = table.column("vector").combine_chunks()
    vectors = np.asarray(flat.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    vectors = vectors.reshape(n, -1)
    unit = normalise(vectors)
    return StoredFaces(
        model,
        table.column("id").to_numpy().astype(np.int64),
        table.column("face").to_numpy().astype(np.int64),
        unit,
        cal,
    )


def face_info(
    con: duckdb.DuckDBPyConnection, ids: Sequence[int], faces: Sequence[int] | None = None
) -> dict[int, FaceInfo]:
    """Path, folder and box of the given files' faces (the standing face by default)."""
    if not len(ids):
        return {}
    face_of = dict(zip(ids, faces, strict=True)) if faces is not None else {}
    rows = records(
        con,
        """SELECT f.id, f.path, f.class, fc.face, fc.box_left, fc.box_top, fc.box_right,
                  fc.box_bottom, coalesce(f.face, 0) AS standing
           FROM files f
           LEFT JOIN faces fc ON fc.hash = f.hash AND fc.model = ?
           WHERE f.id IN (SELECT unnest(?))""",
        [store_model(con), [int(i) for i in ids]],
    )
    found = {}
    for r in rows:
        file_id = int(r["id"])
        if r["face"] is not None and r["face"] != face_of.get(file_id, r["standing"]):
            continue
        corners = (r["box_left"], r["box_top"], r["box_right"], r["box_bottom"])
        box = None if None in corners else corners
        found[file_id] = FaceInfo(id=file_id, path=r["path"], klass=r["class"], box=box)
    return found
