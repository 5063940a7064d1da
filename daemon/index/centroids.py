"""Rows above a bar against many folder centroids, without the F × F product.

The review queue looks for folder pairs (and loose faces) whose centroids come closer
than different people do (daemon/kinds/stats.py: `above`). As a product that is
O(F²·d): 1.05 s at 10,200 folders, about 25 s at 50,000. Past a size, the centroids are
put in lists by a seeded spherical k-means, each row visits the lists whose centres are
nearest it, and each list is compared in one matrix product with every row that visits
it; what reaches the bar is the product's own score, so a pair found is the product's
pair. The lists a row does not visit can hide a pair right at the bar; the kinds then
still see every folder pair their match lists name.

Why products per list and not faiss's own range search over the same lists: its scan
is one row at a time, about 3.6 GFLOP/s against BLAS's 65 on this machine; at 50,000
folders its search (with its 25-iteration training on every centroid) cost 14 CPU-s
and found 16 of the 23 pairs at a cosine of 0.46 and up, where the queue's suggestions
at 1 M faces sit; these products cost 2.2-3.3 and find 20 (docs/design.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.index import faiss_available

# rows × centroids × d below which the product is cheaper than making lists
# (about 0.3 core-s of products).
EXACT_WORK = 1e10
# Lists per centroid set: √F; each row visits PROBE_FRACTION of them (at least
# MIN_PROBE). The training sees at most TRAIN_PER_LIST centroids per list, TRAIN_ITER
# iterations: more of either moved no pair at 50,000 folders.
PROBE_FRACTION = 0.107
MIN_PROBE = 4
TRAIN_PER_LIST = 64
TRAIN_ITER = 10
SEED = 1234
# Rows routed at a time: their list scores are rows × lists floats.
CHUNK = 16384


@dataclass(frozen=True)
class Lists:
    """The centroids' lists: their centres, and the centroids of each list
    (`members[starts[j]:starts[j + 1]]`)."""

    centres: np.ndarray
    members: np.ndarray
    starts: np.ndarray

    @property
    def probe(self) -> int:
        return min(len(self.centres), max(MIN_PROBE, round(PROBE_FRACTION * len(self.centres))))


# The last centroids' lists, by their content: the queue asks twice per refresh (folder
# pairs, then loose faces) about the same centroids. A function of the content alone
# (the training is seeded), so keeping them changes no result.
_last: tuple[bytes, Lists] | None = None


def _lists_of(a: np.ndarray) -> Lists:
    global _last
    import faiss

    key = hashlib.blake2b(a.tobytes(), digest_size=16).digest() + str(a.shape).encode()
    if _last is not None and _last[0] == key:
        return _last[1]
    n_lists = int(max(1, min(np.sqrt(len(a)), len(a) // 39)))
    km: Any = faiss.Kmeans(
        a.shape[1],
        n_lists,
        niter=TRAIN_ITER,
        seed=SEED,
        spherical=True,
        max_points_per_centroid=TRAIN_PER_LIST,
    )
    km.train(a)
    centres = np.ascontiguousarray(km.centroids, np.float32)
    own = np.concatenate(
        [np.argmax(a[s : s + CHUNK] @ centres.T, axis=1) for s in range(0, len(a), CHUNK)]
    )
    members = np.argsort(own, kind="stable")
    starts = np.searchsorted(own[members], np.arange(n_lists + 1))
    lists = Lists(centres, members, starts)
    _last = (key, lists)
    return lists


def forget() -> None:
    """Let go of the last centroids' lists (the queue's step is done with them)."""
    global _last
    _last = None


def above_indexed(
    q: np.ndarray, a: np.ndarray, bar: float, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(row of q, row of a) with q·a ≥ bar, skipping column exclude[row], in row then
    column order; None where the plain product is the cheaper way (small sets) or faiss
    is not installed."""
    if not faiss_available() or float(len(q)) * len(a) * a.shape[1] < EXACT_WORK:
        return None
    a = np.ascontiguousarray(a, np.float32)
    q = np.ascontiguousarray(q, np.float32)
    lists = _lists_of(a)
    n_lists, probe = len(lists.centres), lists.probe
    rows, cols = [], []
    for s in range(0, len(q), CHUNK):
        chunk = q[s : s + CHUNK]
        scores = chunk @ lists.centres.T
        visits = np.argpartition(-scores, probe - 1, axis=1)[:, :probe].ravel()
        # Each list's visitors together: one product per list.
        by_list = np.argsort(visits, kind="stable")
        visitor = by_list // probe
        at = np.searchsorted(visits[by_list], np.arange(n_lists + 1))
        for j in range(n_lists):
            who = visitor[at[j] : at[j + 1]]
            them = lists.members[lists.starts[j] : lists.starts[j + 1]]
            if not len(who) or not len(them):
                continue
            r, c = np.nonzero(chunk[who] @ a[them].T >= bar)
            rows.append(who[r] + s)
            cols.append(them[c])
    r = np.concatenate(rows) if rows else np.empty(0, np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, np.int64)
    if exclude is not None:
        keep = c != exclude[r]
        r, c = r[keep], c[keep]
    order = np.lexsort((c, r))
    return r[order].astype(np.int64), c[order].astype(np.int64)
