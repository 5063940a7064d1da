"""Synthetic faces written straight into a store, for the benchmarks that need a large
one without encoding it (bench_daemon.py, bench_scale.py): one face per file, each file
dirty, as a scan that had just encoded them would leave them."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa


def insert_faces(
    con: duckdb.DuckDBPyConnection, files: pa.Table, vectors: np.ndarray, model: str
) -> None:
    """`files` (path, class, size, mtime_ns, hash) and one vector per file, as rows of
    files, embeddings and faces under `model`."""
    faces = pa.table(
        {
            "hash": files.column("hash"),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vectors, np.float32).ravel()), vectors.shape[1]
            ),
        }
    )
    con.register("bf", files)
    con.register("be", faces)
    try:
        con.execute(
            """INSERT INTO files (id, path, class, size, mtime_ns, hash, first_seen,
                                  last_seen, dirty, candidates)
               SELECT nextval('file_ids'), path, class, size, mtime_ns, hash,
                   now(), now(), true, 0 FROM bf"""
        )
        con.execute(
            """INSERT INTO embeddings (hash, model, status, message, faces, whole_image,
                                       width, height, encoded_at)
               SELECT hash, ?, 'ok', '', 1, false, 150, 150, now() FROM be""",
            [model],
        )
        con.execute(
            "INSERT INTO faces SELECT hash, ?, 0, 0, 0, 150, 150, 0, vector::FLOAT[] FROM be",
            [model],
        )
    finally:
        con.unregister("bf")
        con.unregister("be")
