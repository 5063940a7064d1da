"""Embeddings as unit vectors, so that a dot product is the cosine.

Here rather than in the daemon because both sides need it: the store hands out unit
vectors (store/search.py) and cannot import the daemon, which normalises its own
(compare, search).
"""

from __future__ import annotations

import numpy as np


def row_norms(x: np.ndarray) -> np.ndarray:
    """Each row's length. np.linalg.norm(x, axis=1) reduces each short row on its own:
    at 1 M × 128 it takes twice as long, with an N × d temporary."""
    return np.sqrt(np.einsum("ij,ij->i", x, x))


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1, as float32; an all-zero row stays zero."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = row_norms(v)[:, None]
    norms[norms == 0] = 1.0
    return v / norms


# group_sums: groups past this many rows are summed one by one; smaller ones are gathered
# at most GATHER_ROWS rows at a time.
LARGE_GROUP = 1024
GATHER_ROWS = 1 << 18


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
    sizes = np.diff(np.r_[starts, len(c)])
    # The groups of one size at a time, as one (groups, size, d) sum: np.add.reduceat
    # along the rows costs a call per row (2.3 s at 1 M × 128 against 0.4 this way). A
    # large group is summed where it lies (few are large: no copy of their rows).
    for size in np.unique(sizes).tolist():
        first = starts[sizes == size]
        if size > LARGE_GROUP:
            for f in first.tolist():
                sums[c[f]] = ordered[f : f + size].sum(axis=0)
            continue
        for i in range(0, len(first), GATHER_ROWS // size):
            part = first[i : i + GATHER_ROWS // size]
            sums[c[part]] = ordered[part[:, None] + np.arange(size)].sum(axis=1)
    return sums
