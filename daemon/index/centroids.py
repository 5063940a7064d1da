"""Rows above a bar against many folder centroids, without the F × F product.

The review queue looks for folder pairs (and loose faces) whose centroids come closer
than different people do (daemon/kinds/stats.py: `above`). As a product that is
O(F²·d): 1.05 s at 10,200 folders, about 25 s at 50,000. Past a size, the centroids go
into a faiss IVF-Flat (k-means lists, a seeded training) and each row range-searches the
lists nearest it at the bar; what it proposes is scored again exactly and kept at or
above the bar, so a pair found is the product's pair. The lists it does not visit can
hide a pair right at the bar; the kinds then still see every folder pair their match
lists name.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from daemon.index import faiss_available

# rows × centroids × d below which the product is cheaper than training an index
# (about 0.3 core-s of products).
EXACT_WORK = 1e10
# Lists per centroid set (√F-scaled) and lists each row visits.
LISTS_PER_SQRT = 4
NPROBE = 48
SEED = 1234


# The last centroids' index, by their content: the queue asks twice per refresh (folder
# pairs, then loose faces) about the same centroids. A function of the content alone
# (the training is seeded), so keeping it changes no result.
_last: tuple[bytes, Any] | None = None


def _index_of(a: np.ndarray) -> Any:
    global _last
    import faiss

    key = hashlib.blake2b(a.tobytes(), digest_size=16).digest() + str(a.shape).encode()
    if _last is not None and _last[0] == key:
        return _last[1]
    d = a.shape[1]
    nlist = int(max(1, min(LISTS_PER_SQRT * np.sqrt(len(a)), len(a) // 39)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = SEED  # the same centroids give the same lists, so the same queue
    ivf.train(a)
    ivf.add(a)
    ivf.nprobe = min(NPROBE, nlist)
    _last = (key, ivf)
    return ivf


def forget() -> None:
    """Let go of the last centroids' index (the queue's step is done with it; at 50,000
    folders it holds ~26 MB until the next step replaces it)."""
    global _last
    _last = None


def above_indexed(
    q: np.ndarray, a: np.ndarray, bar: float, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(row of q, row of a) with q·a ≥ bar, skipping column exclude[row]; None where the
    plain product is the cheaper way (small sets) or faiss is not installed."""
    if not faiss_available() or float(len(q)) * len(a) * a.shape[1] < EXACT_WORK:
        return None

    a = np.ascontiguousarray(a, np.float32)
    q = np.ascontiguousarray(q, np.float32)
    ivf = _index_of(a)
    rows, cols = [], []
    for s in range(0, len(q), 16384):
        lims, _, labels = ivf.range_search(q[s : s + 16384], bar - 1e-4)
        r = np.repeat(np.arange(s, s + len(lims) - 1), np.diff(lims.astype(np.int64)))
        c = labels.astype(np.int64)
        keep = np.ones(len(r), bool) if exclude is None else c != exclude[r]
        r, c = r[keep], c[keep]
        # Scored again as the product would: only what reaches the bar leaves.
        exact = np.einsum("ij,ij->i", q[r], a[c]) >= bar
        rows.append(r[exact])
        cols.append(c[exact])
    order_r = np.concatenate(rows) if rows else np.empty(0, np.int64)
    order_c = np.concatenate(cols) if cols else np.empty(0, np.int64)
    order = np.lexsort((order_c, order_r))
    return order_r[order], order_c[order]
