"""Cross-class comparison as tiled matrix products, and each image's best-K match lists.

All embeddings A (N×d, unit length) live on the array backend once. A full run visits the
upper triangle of A·Aᵀ tile by tile (never N×N at once); an incremental run multiplies
only the changed rows Q against A. Only scores at or above the threshold leave the tile,
and same-class pairs are dropped there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from daemon.backend import to_host
from store.vectors import normalise as normalise  # the unit rows A (in store/: see there)

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]  # src index, dst index, cosine
# Where candidates come from: rows=None, every unordered pair once; otherwise the rows
# against every other image (cross_class_candidates' contract). The exact product by
# default; daemon/index's folder index past the size where that stops being cheap.
Search = Callable[[np.ndarray | None], Iterable[Triples]]


def _empty() -> Triples:
    return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)


def cross_class_candidates(
    xp: ModuleType,
    unit: np.ndarray,
    classes: np.ndarray,
    threshold: float,
    rows: np.ndarray | None = None,
    # Tall, narrow tiles: at 57,637 x 128 the bare products ran 1.66 s in 2048x1024 tiles
    # against 2.38 s in 1024x8192 (benchmarks/results/core.txt), and with the scale-aware
    # threshold next to nothing passes, so the products are the whole cost.
    tile_rows: int = 2048,
    tile_cols: int = 1024,
) -> Iterator[Triples]:
    """Yield (i, j, cos) with cos >= threshold and different classes.

    rows=None: every unordered pair once (i < j). Otherwise: each of `rows` against
    every other image (both orders appear when both ends are in `rows`).
    """
    n = len(unit)
    if n == 0:
        return
    a = xp.asarray(unit)
    cls = np.asarray(classes)
    row_list = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    for r0 in range(0, len(row_list), tile_rows):
        r_idx = row_list[r0 : r0 + tile_rows]
        if rows is None:
            q = a[r_idx[0] : r_idx[-1] + 1]
            c_start = int(r_idx[0])
        else:
            q = a[xp.asarray(r_idx)]
            c_start = 0
        for c0 in range(c_start, n, tile_cols):
            c1 = min(n, c0 + tile_cols)
            sims = q @ a[c0:c1].T
            # flatnonzero is several times faster than a 2-D nonzero on a sparse mask.
            flat = xp.flatnonzero(sims >= threshold)
            if len(flat) == 0:
                continue
            vals = to_host(xp, sims.ravel()[flat])
            flat = to_host(xp, flat)
            i = r_idx[flat // (c1 - c0)]
            j = (flat % (c1 - c0)).astype(np.int64) + c0
            keep = (cls[i] != cls[j]) & (j > i if rows is None else j != i)
            if keep.any():
                yield i[keep], j[keep], vals[keep].astype(np.float32)


def exact_search(xp: ModuleType, unit: np.ndarray, classes: np.ndarray, threshold: float) -> Search:
    def search(rows: np.ndarray | None) -> Iterator[Triples]:
        return cross_class_candidates(xp, unit, classes, threshold, rows=rows)

    return search


def rescore(xp: ModuleType, unit: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The cosine of each pair (i, j) of unit rows, on the comparison's backend: an index
    proposes candidates, this scores them (float32, as the tiles do)."""
    if len(i) == 0:
        return np.empty(0, np.float32)
    a = xp.asarray(unit)
    out = np.empty(len(i), np.float32)
    # On the CPU the two gathered blocks stay in cache at ~4 MB each: 1.3 M pairs at 512-d
    # took 2.5 s in 2¹⁸-pair chunks, 0.95 s in 2048 (each pair's sum is the same either
    # way). A GPU wants the big chunks.
    step = max(1024, (1 << 20) // max(unit.shape[1], 1)) if xp is np else 1 << 18
    for s in range(0, len(i), step):
        ii, jj = xp.asarray(i[s : s + step]), xp.asarray(j[s : s + step])
        out[s : s + len(ii)] = to_host(xp, (a[ii] * a[jj]).sum(axis=1, dtype=xp.float32))
    return out


class TopK:
    """Per-source best K (by cosine) of a stream of directed candidates, and their counts.

    Once a source holds K entries, anything below its K-th best can never enter its list:
    `kth` remembers that bar, so most candidates are dropped on arrival instead of sorted.
    At a low threshold (1.5 % of 57,637² pairs pass it) that is the difference between
    sorting ~100 M candidates and sorting a few million.
    """

    def __init__(self, n: int, k: int, compact_at: int = 2_000_000):
        self.k = k
        self.counts = np.zeros(n, dtype=np.int64)
        self.kth = np.full(n, -np.inf, dtype=np.float32)
        self._chunks: list[Triples] = []
        self._size = 0
        self._compact_at = compact_at

    def add(self, src: np.ndarray, dst: np.ndarray, cos: np.ndarray, count: bool = True) -> None:
        if len(src) == 0:
            return
        if count:
            self.counts += np.bincount(src, minlength=len(self.counts))
        useful = cos >= self.kth[src]
        if not useful.all():
            src, dst, cos = src[useful], dst[useful], cos[useful]
        self._chunks.append((src, dst, cos))
        self._size += len(src)
        if self._size > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        src, dst, cos = (np.concatenate(p) for p in zip(*self._chunks, strict=True))
        kept = best_k(src, dst, cos, self.k)
        self._chunks = [kept]
        self._size = len(kept[0])
        # best_k leaves each source's entries best first: the K-th is its new bar.
        k_src, _, k_cos = kept
        if len(k_src):
            starts = np.flatnonzero(np.r_[True, k_src[1:] != k_src[:-1]])
            sizes = np.diff(np.r_[starts, len(k_src)])
            full = sizes == self.k
            self.kth[k_src[starts[full]]] = k_cos[starts[full] + self.k - 1]
        # Fewer survivors than the budget: compact again only when as many new arrive.
        self._compact_at = max(self._compact_at, 2 * self._size)

    def result(self) -> Triples:
        if not self._chunks:
            return _empty()
        self._compact()
        return self._chunks[0]


def _descending_key(cos: np.ndarray) -> np.ndarray:
    """24-bit unsigned keys whose ascending order is descending cosine."""
    bits = np.ascontiguousarray(cos, dtype=np.float32).view(np.uint32)
    ascending = np.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))
    return ((~ascending) >> np.uint32(8)).astype(np.uint64)


def best_k(src: np.ndarray, dst: np.ndarray, cos: np.ndarray, k: int) -> Triples:
    """Keep each source's k highest-cosine entries (near-ties broken by destination)."""
    if len(src) == 0:
        return _empty()
    if len(src) and max(int(src.max()), int(dst.max())) < (1 << 20):
        # One argsort of a packed (source, cosine, destination) key is several times
        # faster than a three-key lexsort: this is the hot spot of a full comparison.
        key = (src.astype(np.uint64) << np.uint64(44)) | (_descending_key(cos) << np.uint64(20))
        order = np.argsort(key | dst.astype(np.uint64))
    else:
        order = np.lexsort((dst, -cos, src))
    src, dst, cos = src[order], dst[order], cos[order]
    starts = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
    sizes = np.diff(np.r_[starts, len(src)])
    rank = np.arange(len(src)) - np.repeat(starts, sizes)
    keep = rank < k
    return src[keep], dst[keep], cos[keep]


@dataclass
class Lists:
    """New best-K lists for `sources` (indices), and each source's candidate count."""

    sources: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    cos: np.ndarray
    candidates: np.ndarray  # aligned with `sources`


def full_lists(
    xp: ModuleType,
    unit: np.ndarray,
    classes: np.ndarray,
    threshold: float,
    k: int,
    search: Search | None = None,
) -> Lists:
    n = len(unit)
    top = TopK(n, k)
    search = search or exact_search(xp, unit, classes, threshold)
    for i, j, c in search(None):
        top.add(np.concatenate([i, j]), np.concatenate([j, i]), np.concatenate([c, c]))
    src, dst, cos = top.result()
    return Lists(np.arange(n), src, dst, cos, top.counts)


def dirty_candidates(
    xp: ModuleType,
    unit: np.ndarray,
    classes: np.ndarray,
    threshold: float,
    k: int,
    dirty: np.ndarray,
    search: Search | None = None,
) -> tuple[TopK, Triples]:
    """Best-K lists of the dirty rows, and the reverse candidates of clean images.

    The reverse triples (clean src, dirty dst, cos) are what each clean image may gain.
    """
    n = len(unit)
    is_dirty = np.zeros(n, dtype=bool)
    is_dirty[dirty] = True
    fwd = TopK(n, k)
    rev: list[Triples] = []
    search = search or exact_search(xp, unit, classes, threshold)
    for i, j, c in search(np.asarray(dirty, np.int64)):
        fwd.add(i, j, c)
        back = ~is_dirty[j]
        rev.append((j[back], i[back], c[back]))
    if not rev:
        return fwd, _empty()
    r_src, r_dst, r_cos = (np.concatenate(p) for p in zip(*rev, strict=True))
    return fwd, (r_src, r_dst, r_cos)


def merge_lists(
    n: int,
    k: int,
    dirty: np.ndarray,
    fwd: TopK,
    rev: Triples,
    old: Triples,
    old_candidates: np.ndarray,
    unchanged: np.ndarray | None = None,
) -> Lists:
    """Lists after the `dirty` rows changed (new content, new class, or new file).

    `old` must hold the stored list of every clean source that points at a dirty image or
    appears in `rev`. A clean image whose list held a dirty entry and had more than k
    candidates must itself be dirty (the caller expands the set): its (k+1)-th match was
    never stored, so only a fresh row can refill its list. Those rows go in `unchanged`
    too: their content and class are what they were, so a clean image's candidate count
    neither loses nor gains them (counting what it gains from them, while only the
    stored part of what it had can be subtracted, would inflate the counts of hubs).
    """
    is_dirty = np.zeros(n, dtype=bool)
    is_dirty[dirty] = True
    moved = is_dirty.copy()  # dirty rows whose relations may really have changed
    if unchanged is not None:
        moved[unchanged] = False
    f_src, f_dst, f_cos = fwd.result()
    o_src, o_dst, o_cos = old
    clean_src = ~is_dirty[o_src]
    keep_old = clean_src & ~is_dirty[o_dst]
    lost_at = clean_src & moved[o_dst]
    lost = np.bincount(o_src[lost_at], minlength=n)
    r_src, r_dst, r_cos = rev
    gained_at = moved[r_dst]
    gained = np.bincount(r_src[gained_at], minlength=n)
    m_src, m_dst, m_cos = best_k(
        np.concatenate([o_src[keep_old], r_src]),
        np.concatenate([o_dst[keep_old], r_dst]),
        np.concatenate([o_cos[keep_old], r_cos]),
        k,
    )
    # A clean image related only to unchanged rows gets its own list and count back.
    clean_changed = np.unique(np.concatenate([o_src[lost_at], r_src[gained_at]]))
    candidates = np.asarray(old_candidates, dtype=np.int64) - lost + gained
    candidates[is_dirty] = fwd.counts[is_dirty]
    candidates = np.maximum(candidates, 0)
    sources = np.unique(np.concatenate([np.asarray(dirty, np.int64), clean_changed]))
    # Clean lists in `old` that the change did not touch are rewritten unchanged: harmless.
    in_sources = np.isin(m_src, sources)
    return Lists(
        sources,
        np.concatenate([f_src, m_src[in_sources]]),
        np.concatenate([f_dst, m_dst[in_sources]]),
        np.concatenate([f_cos, m_cos[in_sources]]),
        candidates[sources],
    )


def incremental_lists(
    xp: ModuleType,
    unit: np.ndarray,
    classes: np.ndarray,
    threshold: float,
    k: int,
    dirty: np.ndarray,
    candidates: np.ndarray,
    stored_lists: Callable[[np.ndarray, np.ndarray], Triples],
    search: Search | None = None,
) -> tuple[Lists, np.ndarray]:
    """New lists after the `dirty` rows changed, reading old lists through `stored_lists`.

    `stored_lists(holding, sources)` returns the stored lists (as row indices) of every
    source holding one of `holding`, and of `sources`. Returns the lists and the dirty set
    actually recomputed (widened by images at their cap that pointed at a dirty one).
    """
    n = len(unit)
    changed = np.asarray(dirty, np.int64)
    h_src, _, _ = stored_lists(changed, np.empty(0, np.int64))
    at_cap = np.setdiff1d(h_src[candidates[h_src] > k], changed)
    dirty = np.unique(np.concatenate([changed, at_cap]))
    fwd, rev = dirty_candidates(xp, unit, classes, threshold, k, dirty, search)
    old = stored_lists(dirty, np.unique(rev[0]))
    return merge_lists(n, k, dirty, fwd, rev, old, candidates, unchanged=at_cap), dirty
