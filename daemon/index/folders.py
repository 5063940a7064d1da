"""The folder index: faiss IVF-Flat whose inverted lists are the folders themselves.

Each face lives in its own folder's list. A query face range-searches (at the pair
threshold) the lists of the folders nearest its folder's centroid, never its own (every
face there is the same class). That misses a pair whose two faces are both misfiled:
neither folder is near the other's centroid. So a "loose" face, one that matches the
rest of its own folder worse than the pair threshold (what a misfiled face does), is
routed by itself as well (the folders nearest the face), and is also entered, as a
stray, in the list of the folder nearest it, in a second index: two misfiled faces of
one person meet in that person's folder's stray list. Every candidate is then scored by
the exact code (`compare.rescore`), so an index changes which pairs are looked at, never
a score.

Ids are file ids (stable across refreshes), so the index is kept incrementally: the
rows that changed since it was last brought up to date (a new, moved, re-encoded or
deleted file, a new standing face) are removed and entered again, the sums and
centroids of the folders they touch recomputed, and the strays those centroids could
move judged again; nothing else is touched, so a kept index equals a fresh one. The
changed rows come from the caller where it knows them (the daemon's dirty files:
`changed=`), else from comparing each file's (content, face, folder) with what the
index holds. It is saved beside the store (`<db>.index.npz`) after a build and when the
daemon stops, and a saved index is checked the second way when loaded.

The lists themselves (`Lists`: two faiss indexes) can live in several places: one in
this process, or one per Ray actor (`daemon/index/shards.py`), each holding the folders
whose list number falls to it; the routing (centroids, probes, strays) stays here, and
a search fans out to every holder and takes the union.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from daemon.compare import Triples, rescore
from daemon.snapshot import positions
from store.vectors import group_sums, normalise, row_norms

log = logging.getLogger("facelint.index")

# Folders whose lists a face searches, nearest its folder's centroid (its own excluded).
NPROBE = 4
# Folders a face also searches, nearest the face itself (the quantiser's routing, with
# the folder centroids as the quantiser).
SELF_PROBE = 4
# Where a face that fits its folder looks for its nearest folders: its folder's nearest
# this many (one F × F product, not N × F).
NEIGHBOURS = 160
# faiss scores in float32 its own way: search a little below the threshold and let the
# exact rescoring decide (a pair's two scores differ by ~1e-7).
MARGIN = 1e-4
# Query rows per range search (bounds the result buffers).
QUERY_CHUNK = 8192
# More changed entries than this fraction of the index: build afresh (one bulk add is
# cheaper than many removals).
REBUILD_FRACTION = 0.5
# A loose face's nearest folders are judged again when a moved centroid comes this close
# to its nearest ones' scores (numpy and faiss round a product differently by ~1e-7).
RECHECK_SLACK = 1e-5


def _faiss() -> Any:
    import faiss

    return faiss


def _ivf(d: int, nlist: int) -> Any:
    faiss = _faiss()
    # The quantiser is never consulted: lists are assigned and probed by us (the folders),
    # so it stays empty and the index is "trained" by declaration.
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    # Removal by id looks each id up instead of scanning every list.
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


class Lists:
    """Where entries live: each folder's faces (`main`) and the strays entered under it,
    by list number, with file ids. One per process, or one per Ray actor."""

    def __init__(self, d: int, capacity: int):
        self.reset(d, capacity)

    def reset(self, d: int, capacity: int) -> None:
        """Empty, for d dimensions and `capacity` lists (a rebuild keeps the holder)."""
        self.main = _ivf(d, capacity)
        self.strays = _ivf(d, capacity)

    def add(self, stray: bool, x: np.ndarray, ids: np.ndarray, lists: np.ndarray) -> None:
        if not len(ids):
            return
        index = self.strays if stray else self.main
        x = np.ascontiguousarray(x, np.float32)
        ids = np.ascontiguousarray(ids, np.int64)
        lists = np.ascontiguousarray(lists, np.int64)
        swig = _faiss().swig_ptr
        index.add_core(len(x), swig(x), swig(ids), swig(lists))

    def remove(self, stray: bool, ids: np.ndarray) -> None:
        """Remove these file ids where present (absent ones are no error)."""
        if not len(ids):
            return
        faiss = _faiss()
        ids = np.ascontiguousarray(ids, np.int64)
        index = self.strays if stray else self.main
        index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids)))

    def search(
        self, x: np.ndarray, radius: float, main_probes: np.ndarray, stray_probes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(query row, file id) of every entry at or above `radius` in the probed lists
        (-1: no list)."""
        rows, labels = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        x = np.ascontiguousarray(x, np.float32)
        for index, probes in ((self.main, main_probes), (self.strays, stray_probes)):
            if index.ntotal == 0 or not len(x):
                continue
            index.nprobe = probes.shape[1]
            lims, _, found = index.range_search_preassigned(
                x, radius, np.ascontiguousarray(probes, np.int64), None
            )
            rows.append(np.repeat(np.arange(len(x)), np.diff(lims.astype(np.int64))))
            labels.append(found.astype(np.int64))
        return np.concatenate(rows), np.concatenate(labels)

    def totals(self) -> tuple[int, int]:
        return int(self.main.ntotal), int(self.strays.ntotal)


class Holder(Protocol):
    """A `Lists` here or in a Ray actor: `call` starts a method, `wait` has its result."""

    def call(self, name: str, *args: Any) -> Any: ...

    def wait(self, handle: Any) -> Any: ...


class Here:
    """The lists in this process."""

    def __init__(self, lists: Lists):
        self.lists = lists

    def call(self, name: str, *args: Any) -> Any:
        return getattr(self.lists, name)(*args)

    def wait(self, handle: Any) -> Any:
        return handle


class Routing:
    """Where each face searches: each row's folder (its list number), the folders' sums
    and centroids, who is loose, and what the probes found nearest, kept between syncs.
    Per-row arrays follow the index's ids; per-folder ones its list numbers."""

    def __init__(self, d: int, capacity: int, threshold: float):
        self.threshold = threshold
        self.codes = np.empty(0, np.int64)
        self.sums = np.zeros((capacity, d), np.float32)
        self.sizes = np.zeros(capacity, np.int64)
        self.centroids = np.zeros((capacity, d), np.float32)
        self.loose = np.empty(0, bool)
        # Each folder's NEIGHBOURS nearest other folders, nearest first, filled as queries
        # need them (-1 pads where there are fewer); valid where its round is the current
        # one (forgetting them all is one increment, not a 130 MB fill at 1 M faces).
        self._neigh = np.full((capacity, NEIGHBOURS), -1, np.int32)
        self._neigh_round = np.zeros(capacity, np.int64)
        self._round = 1
        # Each row's nearest folders and their scores (loose rows: among every folder).
        self._self_nn = np.empty((0, 0), np.int64)
        self._self_sim = np.empty((0, 0), np.float32)
        self._self_done = np.empty(0, bool)
        self._alive: tuple[np.ndarray, np.ndarray] | None = None

    # -- kept in step with the rows ----------------------------------------------------------

    def realign(self, src: np.ndarray | None, n: int) -> None:
        """Rows now come from old rows `src` (-1: new row); None: the same rows."""
        if src is None:
            return
        new = src < 0
        old = np.where(new, 0, src)

        def take(a: np.ndarray, fill: Any) -> np.ndarray:
            if len(a) == 0:
                out = np.empty((n, *a.shape[1:]), a.dtype)
                out[...] = fill
                return out
            out = a[old]
            out[new] = fill
            return out

        self.codes = take(self.codes, -1)
        self.loose = take(self.loose, False)
        self._self_done = take(self._self_done, False)
        self._self_nn = take(self._self_nn, -1) if self._self_nn.shape[1] else self._self_nn
        self._self_sim = take(self._self_sim, 0) if self._self_sim.shape[1] else self._self_sim
        if not self._self_nn.shape[1]:
            self._self_nn = np.empty((n, 0), np.int64)
            self._self_sim = np.empty((n, 0), np.float32)

    def forget(self, rows: np.ndarray) -> None:
        """What these rows found nearest is no longer known."""
        self._self_done[rows] = False

    def refold(self, unit: np.ndarray, folders: np.ndarray) -> np.ndarray:
        """Sums, centroids and looseness again for these folders, from their rows as
        they are now (the same sums, in the same order, as a fresh index's); the caches
        their moves can change forgotten. Returns the rows whose nearest folders are no
        longer known: those of these folders, and loose rows elsewhere that a moved
        centroid may come nearer to (they are judged again as strays)."""
        folders = np.unique(np.asarray(folders, np.int64))
        if not len(folders):
            return np.empty(0, np.int64)
        rows = np.flatnonzero(np.isin(self.codes, folders))
        was_loose = self.loose.copy()
        self.sums[folders] = 0
        self.sizes[folders] = 0
        self.centroids[folders] = 0
        if len(rows):
            codes = self.codes[rows]
            present, local = np.unique(codes, return_inverse=True)
            every = len(rows) == len(self.codes)  # a build: no copy of every vector
            sub = group_sums(unit if every else unit[rows], local, len(present))
            self.sums[present] = sub
            self.sizes[present] = np.bincount(local, minlength=len(present))
            self.centroids[present] = normalise(sub)
            # cos(face, the rest of its folder), chunked so no second N×d array is held.
            cos_loo = np.ones(len(rows), np.float32)
            for s in range(0, len(rows), 65536):
                r = rows[s : s + 65536]
                u = unit[r]
                loo = self.sums[self.codes[r]] - u
                cos_loo[s : s + 65536] = np.einsum("ij,ij->i", u, loo) / np.maximum(
                    row_norms(loo), 1e-12
                )
            self.loose[rows] = (self.sizes[codes] >= 2) & (cos_loo < self.threshold)
        self._refresh_alive(folders)
        # Any folder's nearest folders may have changed: refound as queries ask for them.
        self._round += 1
        # What a face that fits its folder found nearest came from the neighbours: gone.
        self._self_done[~(self.loose & was_loose)] = False
        return np.union1d(rows, self._renew_loose(unit, folders))

    def _renew_loose(self, unit: np.ndarray, folders: np.ndarray) -> np.ndarray:
        """Loose faces' nearest folders (among every folder) after `folders` moved: where
        one of them was among a face's nearest, or comes about as near as its last
        nearest, the face's nearest are merged anew from what was known and the moved
        centroids; where a moved one left them and nothing known can take its place,
        they are forgotten (found again in full when asked). Returns the faces either
        way, and those with nothing known (they are judged again as strays)."""
        loose = self.loose
        unknown = np.flatnonzero(loose & ~self._self_done)
        known = np.flatnonzero(loose & self._self_done)
        k = self._self_nn.shape[1]
        if not len(known) or not k:
            return unknown
        out = [unknown]
        alive = folders[self.sizes[folders] > 0]
        c = self.centroids[alive]
        for s in range(0, len(known), 16384):
            r = known[s : s + 16384]
            nn, sim = self._self_nn[r], self._self_sim[r]
            kth = sim[:, -1]
            moved = np.isin(nn, folders)
            new_sim = unit[r] @ c.T
            hit = moved.any(axis=1) | (new_sim >= kth[:, None] - RECHECK_SLACK).any(axis=1)
            if not hit.any():
                continue
            r, nn, sim, kth, moved = r[hit], nn[hit], sim[hit], kth[hit], moved[hit]
            new_sim = new_sim[hit]
            all_nn = np.concatenate([nn, np.broadcast_to(alive, new_sim.shape)], axis=1)
            all_sim = np.concatenate([np.where(moved, -np.inf, sim), new_sim], axis=1)
            best = np.argsort(-all_sim, axis=1, kind="stable")[:, :k]
            top_sim = np.take_along_axis(all_sim, best, axis=1)
            # A known folder left and what is merged now ends below the old k-th: a folder
            # never seen may lie between.
            lost = moved.any(axis=1) & (top_sim[:, -1] < kth)
            keep = ~lost
            self._self_nn[r[keep]] = np.take_along_axis(all_nn, best, axis=1)[keep]
            self._self_sim[r[keep]] = top_sim[keep]
            self._self_done[r[lost]] = False
            out.append(r)
        return np.unique(np.concatenate(out)).astype(np.int64)

    # -- what a face probes --------------------------------------------------------------------

    def _refresh_alive(self, folders: np.ndarray) -> None:
        """The compact centroids after `folders` were refolded: rewritten in place where
        the same folders have faces as before, compacted again where that changed."""
        if self._alive is None:
            return
        codes, c = self._alive
        at = np.searchsorted(codes, folders)
        there = (at < len(codes)) & (codes[np.minimum(at, len(codes) - 1)] == folders)
        if np.array_equal(there, self.sizes[folders] > 0):
            c[at[there]] = self.centroids[folders[there]]
        else:
            self._alive = None

    def _alive_centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """(list numbers of the folders that have faces, their centroids), compact."""
        if self._alive is None:
            codes = np.flatnonzero(self.sizes > 0)
            self._alive = (codes, np.ascontiguousarray(self.centroids[codes]))
        return self._alive

    def neighbours(self, codes: np.ndarray) -> np.ndarray:
        """The NEIGHBOURS folders nearest each code's centroid, itself excluded."""
        todo = np.unique(codes[self._neigh_round[codes] != self._round])
        alive, c = self._alive_centroids()
        at = np.searchsorted(alive, todo)
        for s in range(0, len(todo), 4096):
            t = todo[s : s + 4096]
            sims = c[at[s : s + 4096]] @ c.T
            sims[np.arange(len(t)), at[s : s + 4096]] = -np.inf
            k = min(NEIGHBOURS, len(c) - 1)
            self._neigh_round[t] = self._round
            if k <= 0:
                self._neigh[t] = -1
                continue
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(c) else None
            if part is None:
                part = np.argsort(-sims, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
            self._neigh[t] = -1
            self._neigh[t, :k] = alive[np.take_along_axis(part, order, axis=1)]
        return self._neigh[codes].astype(np.int64)

    def folder_probes(self, codes: np.ndarray) -> np.ndarray:
        """NPROBE folders nearest each code's centroid, itself excluded (-1 pads)."""
        return self.neighbours(codes)[:, :NPROBE]

    def _self(self, unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The SELF_PROBE + 1 folders nearest each row itself, nearest first: among its
        folder and that folder's neighbours for a face that fits its folder (its nearest
        folders are there), among every folder for a loose one."""
        alive, c = self._alive_centroids()
        k = min(SELF_PROBE + 1, len(alive))
        if self._self_nn.shape[1] != k:
            self._self_nn = np.full((len(self.codes), k), -1, np.int64)
            self._self_sim = np.full((len(self.codes), k), -np.inf, np.float32)
            self._self_done = np.zeros(len(self.codes), bool)
        todo = rows[~self._self_done[rows]]
        self._self_done[todo] = True
        loose = todo[self.loose[todo]]
        # One product and a partial sort, in blocks of ~32 MB of scores (faiss.knn took
        # twice as long for a few rows; the same code for a build and for a kept index
        # also rounds their scores alike).
        step = max(1, (8 << 20) // max(len(alive), 1))
        for s in range(0, len(loose), step):
            t = loose[s : s + step]
            sims = unit[t] @ c.T
            part = (
                np.argpartition(-sims, k - 1, axis=1)[:, :k]
                if k < len(alive)
                else np.broadcast_to(np.arange(len(alive)), sims.shape)
            )
            part_sim = np.take_along_axis(sims, part, axis=1)
            order = np.argsort(-part_sim, axis=1, kind="stable")
            self._self_nn[t] = alive[np.take_along_axis(part, order, axis=1)]
            self._self_sim[t] = np.take_along_axis(part_sim, order, axis=1)
        fitting = todo[~self.loose[todo]]
        if len(fitting):
            self._self_fitting(unit, fitting, k)
        return self._self_nn[rows]

    def _self_fitting(self, unit: np.ndarray, rows: np.ndarray, k: int) -> None:
        """Nearest folders of faces that fit their folder, among it and its neighbours:
        folders in batches, one stacked product each (one product per folder spent more
        time in Python than in the products: 5,050 folders at 100k × 512)."""
        codes = self.codes[rows]
        order = np.argsort(codes, kind="stable")
        rows, codes = rows[order], codes[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        sizes = np.diff(np.r_[starts, len(codes)])
        groups = codes[starts]
        cand = np.concatenate([groups[:, None], self.neighbours(groups)], axis=1)
        valid = cand >= 0
        at_group = np.repeat(np.arange(len(groups)), sizes)
        at_slot = np.arange(len(rows)) - np.repeat(starts, sizes)
        d = unit.shape[1]
        # ~32 MB of gathered centroids a batch.
        per = max(1, (8 << 20) // max(cand.shape[1] * d, 1))
        for g0 in range(0, len(groups), per):
            g1 = min(len(groups), g0 + per)
            r0, r1 = starts[g0], starts[g1] if g1 < len(groups) else len(rows)
            width = int(sizes[g0:g1].max())
            u = np.zeros((g1 - g0, width, d), np.float32)
            u[at_group[r0:r1] - g0, at_slot[r0:r1]] = unit[rows[r0:r1]]
            c = self.centroids[np.maximum(cand[g0:g1], 0)]
            sims = np.matmul(u, c.transpose(0, 2, 1))
            sims[~np.broadcast_to(valid[g0:g1, None, :], sims.shape)] = -np.inf
            sims = sims[at_group[r0:r1] - g0, at_slot[r0:r1]]
            kk = min(k, sims.shape[1])
            part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < sims.shape[1] else None
            if part is None:
                part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
            best = np.take_along_axis(
                part, np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1), axis=1
            )[:, :kk]
            picked = cand[at_group[r0:r1, None], best]
            picked_sim = np.take_along_axis(sims, best, axis=1)
            picked[~np.isfinite(picked_sim)] = -1
            self._self_nn[rows[r0:r1], :kk] = picked
            self._self_nn[rows[r0:r1], kk:] = -1

    def self_probes(self, unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The SELF_PROBE folders nearest each row itself (its own folder may be one)."""
        return self._self(unit, rows)[:, :SELF_PROBE]

    def stray_folder(self, unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The folder nearest each loose row other than its own (-1: not loose)."""
        out = np.full(len(rows), -1, np.int64)
        loose = np.flatnonzero(self.loose[rows])
        if len(loose) and len(self._alive_centroids()[0]) > 1:
            r = rows[loose]
            nn = self._self(unit, r)
            foreign = (nn != self.codes[r][:, None]) & (nn >= 0)
            # The first foreign entry: the own folder is at most one of them.
            out[loose] = nn[np.arange(len(r)), np.argmax(foreign, axis=1)]
        return out


def _objects(items: Sequence[str]) -> np.ndarray:
    """A sequence (a list, or keys made as asked) as a 1-D object array."""
    return np.fromiter(iter(items), dtype=object, count=len(items))


def _dedupe_rows(probes: np.ndarray) -> np.ndarray:
    """Each row's distinct lists first, -1 after, as few columns as the fullest row needs:
    a list named twice would be scanned twice, and faiss reads at most nlist probes per
    query (more would shift every following row)."""
    p = np.sort(probes, axis=1)
    dup = np.zeros_like(p, dtype=bool)
    dup[:, 1:] = p[:, 1:] == p[:, :-1]
    p = -np.sort(-np.where(dup, -1, p), axis=1)
    width = max(1, int((p >= 0).sum(axis=1).max())) if len(p) else 1
    return np.ascontiguousarray(p[:, :width])


class FolderIndex:
    """Faces in their folders' lists, strays in a second index; ids are file ids.

    `owns`: the folders this index holds (None: all). A shard holds some folders' lists
    and the strays entered under them; the union of the shards' candidates is the whole
    index's (the routing is the same everywhere: it reads only the centroids).
    `holders`: where the lists live (default: one `Lists` here); with several, list
    number L lives in holders[L % len(holders)] and a search asks them all."""

    def __init__(
        self,
        d: int,
        capacity: int = 1024,
        owns: Iterable[str] | None = None,
        holders: Sequence[Holder] | None = None,
    ):
        self.d = d
        self.capacity = capacity
        self.owns = None if owns is None else frozenset(owns)
        self.holders: list[Holder] = (
            list(holders) if holders is not None else [Here(Lists(d, capacity))]
        )
        self.list_of: dict[str, int] = {}
        self._holder_of = np.full(capacity, -1, np.int64)  # list number -> holder (-1: none)
        # What the index holds, by file id (ascending): the standing face's key
        # (content and face), its folder's list and its stray list (-1: none).
        self.ids = np.empty(0, np.int64)
        self.keys = np.empty(0, object)
        self.lists = np.empty(0, np.int64)
        self.stray_lists = np.empty(0, np.int64)
        self.unsaved = 0  # entries changed since the last save
        self.built = False  # whether the last sync built it afresh
        self.generation: int | None = None  # the store's, where the caller said it
        self.told = False  # whether the last sync read only the caller's changed rows
        self._routing: Routing | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def main(self) -> Any:
        """The one local holder's faiss index of folder lists (tests, benchmarks)."""
        return self._local().main

    @property
    def strays(self) -> Any:
        return self._local().strays

    def _local(self) -> Lists:
        (holder,) = self.holders
        assert isinstance(holder, Here), "the lists live in Ray actors"
        return holder.lists

    def totals(self) -> tuple[int, int]:
        """(faces, strays) entered over every holder."""
        got = [h.wait(ref) for h, ref in [(h, h.call("totals")) for h in self.holders]]
        return sum(g[0] for g in got), sum(g[1] for g in got)

    # -- keeping it in line with the faces -----------------------------------------------

    def _numbers(self, names: Sequence[str]) -> np.ndarray:
        """List numbers of these folder names; new names get the next ones, in name
        order (a fresh index numbers its folders as a sorted unique does)."""
        fresh = sorted({x for x in names if x not in self.list_of})
        for name in fresh:
            number = len(self.list_of)
            self.list_of[name] = number
            if number < self.capacity:
                held = self.owns is None or name in self.owns
                self._holder_of[number] = number % len(self.holders) if held else -1
        get = self.list_of.__getitem__
        return np.fromiter(map(get, names), np.int64, len(names))

    def sync(
        self,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: Sequence[str],
        keys: Sequence[str],
        threshold: float,
        changed: np.ndarray | None = None,
        generation: int | None = None,
    ) -> FolderIndex:
        """Bring the index in line with these faces (unit rows, file ids ascending, their
        folders and their standing faces' keys); returns the index to search: this one,
        or a fresh one where keeping this one would cost more than building.

        `changed`: the rows that may differ from what the index was last brought in line
        with (new, moved, re-encoded; deleted files are told by `ids`), where the caller
        knows; then only those rows' classes and keys are read. None: every row is
        compared with what the index holds."""
        ids = np.asarray(ids, np.int64)
        if unit.shape[1] != self.d:
            return self._fresh(unit, ids, classes, keys, threshold, generation)
        plan = None
        if changed is not None and self._routing is not None:
            plan = self._told(ids, classes, keys, np.asarray(changed, np.int64))
        self.told = plan is not None
        if plan is None:
            plan = self._compared(ids, classes, keys)
        src, rows, codes, new_keys, gone = plan
        too_many_lists = len(self.list_of) > self.capacity
        too_much_change = len(rows) + len(gone) > REBUILD_FRACTION * max(len(self.ids), 1)
        if too_many_lists or too_much_change:
            return self._fresh(unit, ids, classes, keys, threshold, generation)
        self._apply(unit, ids, src, rows, codes, new_keys, gone, threshold)
        self.unsaved += len(rows) + len(gone)
        self.built = False
        self.generation = generation
        return self

    def _fresh(
        self,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: Sequence[str],
        keys: Sequence[str],
        threshold: float,
        generation: int | None,
    ) -> FolderIndex:
        """A new index of these faces (this one, where it holds nothing yet)."""
        d = unit.shape[1]
        names = len(set(classes))
        capacity = self.capacity if names <= self.capacity else max(1024, 2 * names)
        empty = self._routing is None and not len(self.ids) and not self.list_of
        if empty and d == self.d and capacity == self.capacity:
            fresh = self
        elif all(isinstance(h, Here) for h in self.holders):
            fresh = FolderIndex(d, capacity, self.owns)  # this one stays as it was
        else:
            for h in self.holders:  # the same Ray actors, emptied
                h.wait(h.call("reset", d, capacity))
            fresh = FolderIndex(d, capacity, self.owns, self.holders)
        n = len(ids)
        fresh._apply(
            unit,
            ids,
            np.full(n, -1, np.int64),
            np.arange(n),
            fresh._numbers(list(classes)),
            _objects(keys),
            np.empty(0, np.int64),
            threshold,
        )
        fresh.unsaved = n
        fresh.built = True
        fresh.generation = generation
        return fresh

    def _told(
        self, ids: np.ndarray, classes: Sequence[str], keys: Sequence[str], changed: np.ndarray
    ) -> tuple | None:
        """What changed, from the caller's changed rows and the ids (None: the rows do
        not line up with what the index holds, so the caller's word cannot be used)."""
        n, m = len(ids), len(self.ids)
        changed = np.unique(changed)
        if len(changed) and (changed[0] < 0 or changed[-1] >= n):
            return None
        cid = ids[changed]
        pos, held = positions(self.ids, cid)
        n_new = int(np.count_nonzero(~held))
        n_gone = m - (n - n_new)
        if n_gone < 0:
            return None
        is_new = np.zeros(n, bool)
        is_new[changed[~held]] = True
        if n_gone == 0 and n_new == 0:
            src = None
            gone = np.empty(0, np.int64)
            same_ids = np.array_equal(ids, self.ids)
        else:
            gone = np.setdiff1d(self.ids, ids, assume_unique=True) if n_gone else np.empty(0)
            gone = gone.astype(np.int64)
            if len(gone) != n_gone:
                return None
            kept = (
                np.flatnonzero(~np.isin(self.ids, gone)) if n_gone else np.arange(m, dtype=np.int64)
            )
            src = np.full(n, -1, np.int64)
            src[~is_new] = kept
            same_ids = np.array_equal(ids[~is_new], self.ids[kept])
        if not same_ids:
            return None
        rows_classes = [classes[i] for i in changed.tolist()]
        codes = self._numbers(rows_classes)
        new_keys = np.asarray([keys[i] for i in changed.tolist()], dtype=object)
        old = pos[held]
        differs = np.ones(len(changed), bool)
        differs[held] = (self.keys[old] != new_keys[held]) | (self.lists[old] != codes[held])
        return src, changed[differs], codes[differs], new_keys[differs], gone

    def _compared(self, ids: np.ndarray, classes: Sequence[str], keys: Sequence[str]) -> tuple:
        """What changed, by comparing every row with what the index holds."""
        n = len(ids)
        codes = self._numbers(list(classes))
        key_arr = _objects(keys)
        pos, present = positions(self.ids, ids)
        gone = np.setdiff1d(self.ids, ids[present], assume_unique=True).astype(np.int64)
        same = present.copy()
        same[present] = (self.keys[pos[present]] == key_arr[present]) & (
            self.lists[pos[present]] == codes[present]
        )
        src = np.where(present, pos, -1)
        if not len(gone) and bool(present.all()) and n == len(self.ids):
            src = None
        rows = np.flatnonzero(~same)
        return src, rows, codes[rows], key_arr[rows], gone

    def _apply(
        self,
        unit: np.ndarray,
        ids: np.ndarray,
        src: np.ndarray | None,
        rows: np.ndarray,
        codes: np.ndarray,
        keys: np.ndarray,
        gone: np.ndarray,
        threshold: float,
    ) -> None:
        """Enter `rows` (new coordinates) under their list numbers `codes` and keys, drop
        `gone` ids; rows now come from old rows `src` (-1 new, None: the same rows)."""
        n = len(ids)
        # What the changed and gone entries were: their lists are touched.
        old_pos, old_held = positions(self.ids, ids[rows])
        old_pos = old_pos[old_held]
        gone_pos = np.searchsorted(self.ids, gone)
        touched = np.unique(
            np.concatenate([self.lists[old_pos], self.lists[gone_pos], codes]).astype(np.int64)
        )
        stray_out = np.concatenate([self.ids[old_pos], gone])
        stray_out_lists = np.concatenate([self.stray_lists[old_pos], self.stray_lists[gone_pos]])
        self._remove(
            False,
            np.concatenate([self.ids[old_pos], gone]),
            np.concatenate([self.lists[old_pos], self.lists[gone_pos]]),
        )
        self._remove(True, stray_out, stray_out_lists)
        # The bookkeeping, row for row with `ids`.
        if src is not None:
            new = src < 0
            at = np.where(new, 0, src)
            self.keys = self.keys[at] if len(self.keys) else np.empty(n, object)
            self.lists = self.lists[at] if len(self.lists) else np.full(n, -1, np.int64)
            self.stray_lists = (
                self.stray_lists[at] if len(self.stray_lists) else np.full(n, -1, np.int64)
            )
            self.stray_lists[new] = -1
        self.ids = ids.copy() if src is not None or len(self.ids) != n else self.ids
        self.keys[rows] = keys
        self.lists[rows] = codes
        self.stray_lists[rows] = -1
        self._add(False, unit, rows, codes)
        # The routing: rows, then the folders they touch (all of them, new or after a
        # recalibration: who is loose depends on the threshold).
        routing = self._routing
        rebuild = routing is None or routing.threshold != threshold
        if routing is None or rebuild:
            routing = self._routing = Routing(self.d, self.capacity, threshold)
            routing.realign(np.full(n, -1, np.int64), n)
            routing.codes = self.lists.copy()
            touched = np.unique(self.lists)
        else:
            routing.realign(src, n)
            routing.codes[rows] = codes
            routing.forget(rows)  # a changed row's vector may be new
        again = routing.refold(unit, touched)
        # Strays: every row whose stray list may differ is judged again.
        self._judge_strays(unit, np.arange(n) if rebuild else np.union1d(again, rows), rows)

    def _judge_strays(self, unit: np.ndarray, judge: np.ndarray, entered: np.ndarray) -> None:
        """Each judged row's stray list as the routing says now; entries that differ (or
        whose vector was just entered anew) go out and in again."""
        routing = self._routing
        assert routing is not None
        want = routing.stray_folder(unit, judge)
        have = self.stray_lists[judge]
        fresh = np.zeros(len(self.ids), bool)
        fresh[entered] = True
        redo = (want != have) | fresh[judge]
        out = judge[redo & (have >= 0) & ~fresh[judge]]
        self._remove(True, self.ids[out], self.stray_lists[out])
        self.stray_lists[out] = -1
        put = judge[redo & (want >= 0)]
        self._add(True, unit, put, want[redo & (want >= 0)])

    def _holders_of(self, lists: np.ndarray) -> np.ndarray:
        return np.where(lists >= 0, self._holder_of[np.maximum(lists, 0)], -1)

    def _remove(self, stray: bool, file_ids: np.ndarray, lists: np.ndarray | None) -> None:
        """Remove ids from their holders (`lists` known: only where each was entered)."""
        file_ids = np.asarray(file_ids, np.int64)
        if not len(file_ids):
            return
        if lists is None:
            targets = [(h, file_ids) for h in self.holders]
        else:
            where = self._holders_of(np.asarray(lists, np.int64))
            targets = [
                (h, file_ids[where == i]) for i, h in enumerate(self.holders) if (where == i).any()
            ]
        refs = [(h, h.call("remove", stray, part)) for h, part in targets if len(part)]
        for h, ref in refs:
            h.wait(ref)

    def _add(self, stray: bool, unit: np.ndarray, rows: np.ndarray, lists: np.ndarray) -> None:
        if not len(rows):
            return
        where = self._holders_of(np.asarray(lists, np.int64))
        refs = []
        for i, h in enumerate(self.holders):
            mine = where == i
            if not mine.any():
                continue
            r = rows[mine]
            refs.append((h, h.call("add", stray, unit[r], self.ids[r], lists[mine])))
        for h, ref in refs:
            h.wait(ref)
        if stray:
            self.stray_lists[rows[where >= 0]] = lists[where >= 0]

    # -- searching -------------------------------------------------------------------------

    def pairs(self, unit: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Unordered candidate pairs (row, row) of different folders, lower row first, one
        end among `rows` (None: every row), as an (m, 2) array, sorted; not yet scored."""
        routing = self._routing
        assert routing is not None, "sync the index first"
        n = len(unit)
        query = np.arange(n) if rows is None else np.asarray(rows, np.int64)
        found: list[np.ndarray] = []
        radius = routing.threshold - MARGIN
        for s in range(0, len(query), QUERY_CHUNK):
            q = query[s : s + QUERY_CHUNK]
            own = routing.codes[q]
            by_folder = routing.folder_probes(own)
            by_self = routing.self_probes(unit, q)
            by_self_foreign = np.where(by_self == own[:, None], -1, by_self)
            main_codes = _dedupe_rows(np.concatenate([by_folder, by_self_foreign], axis=1))
            stray_codes = _dedupe_rows(np.concatenate([own[:, None], by_folder, by_self], axis=1))
            x = unit[q]
            refs = []
            for i, h in enumerate(self.holders):
                main_i = np.where(self._holders_of(main_codes) == i, main_codes, -1)
                stray_i = np.where(self._holders_of(stray_codes) == i, stray_codes, -1)
                ask = ((main_i >= 0).any(axis=1)) | ((stray_i >= 0).any(axis=1))
                if not ask.any():
                    continue
                sel = np.flatnonzero(ask)
                if len(sel) == len(q):
                    args = (x, radius, main_i, stray_i)
                else:
                    args = (x[sel], radius, main_i[sel], stray_i[sel])
                refs.append((h, sel, h.call("search", *args)))
            for h, sel, ref in refs:
                at, labels = h.wait(ref)
                src = q[sel[at]]
                dst, ok = positions(self.ids, labels)
                src, dst = src[ok], dst[ok]
                keep = routing.codes[src] != routing.codes[dst]
                lo, hi = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
                found.append(lo * n + hi)
        return _unique_pairs(found, n)


def _unique_pairs(keys: list[np.ndarray], n: int) -> np.ndarray:
    """(m, 2) rows (lo, hi) of the distinct keys lo·n + hi, sorted (one integer sort is
    ~10× a unique over rows: at 512-d that was a third of the full pass)."""
    if not keys:
        return np.empty((0, 2), np.int64)
    # A sort and a neighbour test: np.unique's hashing took 2.2 s for the 4 M keys of
    # 100k × 512, the sort 0.3 s.
    k = np.sort(np.concatenate(keys))
    k = k[np.r_[True, k[1:] != k[:-1]]] if len(k) else k
    return np.stack([k // n, k % n], axis=1) if len(k) else np.empty((0, 2), np.int64)


def candidates(
    indexes: Sequence[FolderIndex],
    xp: ModuleType,
    unit: np.ndarray,
    threshold: float,
    rows: np.ndarray | None = None,
) -> Iterator[Triples]:
    """compare.cross_class_candidates' triples, with candidates from the index (or the
    union of its shards) and scores from the exact code: rows=None, every unordered pair
    once (i < j); otherwise each of `rows` against the others, both orders where both
    ends are among `rows`."""
    found = [ix.pairs(unit, rows) for ix in indexes]
    n = len(unit)
    if len(found) > 1:
        pairs = _unique_pairs([p[:, 0] * n + p[:, 1] for p in found], n)
    else:
        pairs = found[0]
    if not len(pairs):
        return
    i, j = pairs[:, 0], pairs[:, 1]
    if rows is not None:
        asked = np.zeros(len(unit), bool)
        asked[rows] = True
        fwd, back = asked[i], asked[j]
        i, j = np.concatenate([i[fwd], j[back]]), np.concatenate([j[fwd], i[back]])
    for s in range(0, len(i), 1 << 20):
        a, b = i[s : s + (1 << 20)], j[s : s + (1 << 20)]
        cos = rescore(xp, unit, a, b)
        keep = cos >= threshold
        if keep.any():
            yield a[keep], b[keep], cos[keep]


# -- beside the store ----------------------------------------------------------------------


def index_path(db: Path) -> Path:
    return Path(f"{db}.index.npz")


def save(index: FolderIndex, path: Path, model: str) -> None:
    """Write atomically (a crash leaves the old file or the new one, never half). Only
    an index whose lists are here is saved (Ray actors' lists are rebuilt at start)."""
    faiss = _faiss()
    tmp = path.with_name(path.name + ".tmp")
    names = sorted(index.list_of, key=index.list_of.__getitem__)
    with open(tmp, "wb") as f:
        np.savez(
            f,
            main=faiss.serialize_index(index.main),
            strays=faiss.serialize_index(index.strays),
            ids=index.ids,
            keys=index.keys.astype(str),
            lists=index.lists,
            stray_lists=index.stray_lists,
            names=np.asarray(names, dtype=str),
            meta=np.asarray([model, str(index.d), str(index.capacity)], dtype=str),
        )
    os.replace(tmp, path)
    index.unsaved = 0


def load(path: Path, model: str, d: int) -> FolderIndex | None:
    """The saved index, or None where there is none, it is unreadable or it was built for
    another model or size (then the caller builds one)."""
    if not path.exists():
        return None
    faiss = _faiss()
    try:
        with np.load(path, allow_pickle=False) as z:
            stored_model, stored_d, capacity = z["meta"].tolist()
            if stored_model != model or int(stored_d) != d:
                return None
            index = FolderIndex(d, int(capacity))
            lists = index._local()
            lists.main = faiss.deserialize_index(z["main"])
            lists.strays = faiss.deserialize_index(z["strays"])
            index.ids = z["ids"]
            index.keys = z["keys"].astype(object)
            index.lists = z["lists"]
            index.stray_lists = z["stray_lists"]
            index.list_of = {str(x): i for i, x in enumerate(z["names"].tolist())}
            if len(index.list_of) > index.capacity:
                raise ValueError("more folders than lists")
            index._holder_of[: len(index.list_of)] = 0
    except Exception as exc:  # a torn or foreign file: rebuilt, and said
        log.warning("index %s unreadable (%s): building it again", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return index
