"""Embeddings as unit vectors, so that a dot product is the cosine.

Here rather than in the daemon because both sides need it: the store hands out unit
vectors (store/search.py) and cannot import the daemon, which normalises its own
(compare, search).
"""

from __future__ import annotations

import numpy as np


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1, as float32; an all-zero row stays zero."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return v / norms


def group_sums(rows: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of rows, in the rows' dtype: a folder's centroid direction, and less
    one row its leave-one-out direction (np.add.at is several times slower at this size)."""
    sums = np.zeros((n_groups, rows.shape[1]), dtype=rows.dtype)
    if not len(codes):
        return sums
    # Rows that come grouped already (the kinds' faces, in content order) are summed
    # where they lie: the same sums, without sorting and copying every row first.
    if (np.diff(codes) >= 0).all():
        c, ordered = codes, rows
    else:
        order = np.argsort(codes, kind="stable")
        c, ordered = codes[order], rows[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sums[c[starts]] = np.add.reduceat(ordered, starts, axis=0)
    return sums
