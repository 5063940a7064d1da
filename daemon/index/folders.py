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

Ids are file ids (stable across refreshes), so the index is kept incrementally: what
changed since it was last brought up to date (a new, moved, re-encoded or deleted file,
a new standing face) is told by comparing each file's (content, face, folder) with what
the index holds, removed and entered again; nothing else is touched. It is saved beside
the store (`<db>.index.npz`) after a build and when the daemon stops, and a saved index
is checked the same way when loaded, so a stale one is only brought up to date.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from daemon.compare import Triples, rescore
from daemon.snapshot import positions
from store.vectors import group_sums, normalise

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


def _faiss() -> Any:
    import faiss

    return faiss


def _ivf(d: int, nlist: int) -> Any:
    faiss = _faiss()
    # The quantiser is never consulted: lists are assigned and probed by us (the folders),
    # so it stays empty and the index is "trained" by declaration.
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    return index


class Routing:
    """One refresh's view: rows' folder codes, folder centroids and who is loose."""

    def __init__(self, unit: np.ndarray, classes: Sequence[str], threshold: float):
        names, codes = np.unique(np.asarray(classes, dtype=object), return_inverse=True)
        self.names = [str(x) for x in names]
        self.codes = codes.astype(np.int64)
        self.threshold = threshold
        n_f = len(self.names)
        sums = group_sums(np.asarray(unit, np.float32), self.codes, n_f)
        self.centroids = normalise(sums)
        sizes = np.bincount(self.codes, minlength=n_f)
        # cos(face, the rest of its folder), chunked so no second N×d array is held.
        cos_loo = np.ones(len(unit), np.float32)
        for s in range(0, len(unit), 65536):
            u = unit[s : s + 65536]
            loo = sums[self.codes[s : s + 65536]] - u
            cos_loo[s : s + 65536] = np.einsum("ij,ij->i", u, loo) / np.maximum(
                np.linalg.norm(loo, axis=1), 1e-12
            )
        self.loose = (sizes[self.codes] >= 2) & (cos_loo < threshold)
        # Each folder's NEIGHBOURS nearest other folders, nearest first, filled as queries
        # need them (-2: not yet; -1 pads where there are fewer).
        self._neigh = np.full((n_f, NEIGHBOURS), -2, np.int64)
        self._self_nn: np.ndarray | None = None  # each row's nearest folders (-2: not yet)

    def neighbours(self, codes: np.ndarray) -> np.ndarray:
        """The NEIGHBOURS folders nearest each code's centroid, itself excluded."""
        todo = np.unique(codes[self._neigh[codes, 0] == -2])
        c = self.centroids
        for s in range(0, len(todo), 4096):
            t = todo[s : s + 4096]
            sims = c[t] @ c.T
            sims[np.arange(len(t)), t] = -np.inf
            k = min(NEIGHBOURS, len(c) - 1)
            if k <= 0:
                self._neigh[t] = -1
                continue
            part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(c) else None
            if part is None:
                part = np.argsort(-sims, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
            self._neigh[t] = -1
            self._neigh[t, :k] = np.take_along_axis(part, order, axis=1)
        return self._neigh[codes]

    def folder_probes(self, codes: np.ndarray) -> np.ndarray:
        """NPROBE folders nearest each code's centroid, itself excluded (-1 pads)."""
        return self.neighbours(codes)[:, :NPROBE]

    def _self(self, unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The SELF_PROBE + 1 folders nearest each row itself, nearest first: among its
        folder and that folder's neighbours for a face that fits its folder (its nearest
        folders are there), among every folder for a loose one."""
        k = min(SELF_PROBE + 1, len(self.centroids))
        if self._self_nn is None or self._self_nn.shape[1] != k:
            self._self_nn = np.full((len(unit), k), -1, np.int64)
            self._self_done = np.zeros(len(unit), bool)
        todo = rows[~self._self_done[rows]]
        self._self_done[todo] = True
        loose = todo[self.loose[todo]]
        for s in range(0, len(loose), 16384):
            t = loose[s : s + 16384]
            faiss = _faiss()
            _, nn = faiss.knn(
                np.ascontiguousarray(unit[t]), self.centroids, k, metric=faiss.METRIC_INNER_PRODUCT
            )
            self._self_nn[t] = nn
        fitting = todo[~self.loose[todo]]
        if len(fitting):
            codes = self.codes[fitting]
            order = np.argsort(codes, kind="stable")
            fitting, codes = fitting[order], codes[order]
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            ends = np.r_[starts[1:], len(codes)]
            neigh = self.neighbours(codes[starts])
            for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
                cand = np.r_[codes[a], neigh[g][neigh[g] >= 0]]
                sims = unit[fitting[a:b]] @ self.centroids[cand].T
                kk = min(k, len(cand))
                best = np.argsort(-sims, axis=1)[:, :kk]
                self._self_nn[fitting[a:b], :kk] = cand[best]
        return self._self_nn[rows]

    def self_probes(self, unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The SELF_PROBE folders nearest each row itself (its own folder may be one)."""
        return self._self(unit, rows)[:, :SELF_PROBE]

    def stray_folder(self, unit: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The folder nearest each loose row other than its own (-1: not loose)."""
        out = np.full(len(rows), -1, np.int64)
        loose = np.flatnonzero(self.loose[rows])
        if len(loose) and len(self.centroids) > 1:
            r = rows[loose]
            nn = self._self(unit, r)
            foreign = nn != self.codes[r][:, None]
            # The first foreign entry: the own folder is at most one of them.
            out[loose] = nn[np.arange(len(r)), np.argmax(foreign, axis=1)]
        return out


def _add_core(index: Any, x: np.ndarray, ids: np.ndarray, lists: np.ndarray) -> None:
    """Add rows under the given ids to the given lists (no quantiser involved)."""
    swig = _faiss().swig_ptr
    index.add_core(len(x), swig(x), swig(ids), swig(lists))


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
    index's (the routing is the same everywhere: it reads only the centroids)."""

    def __init__(self, d: int, capacity: int = 1024, owns: Iterable[str] | None = None):
        self.d = d
        self.capacity = capacity
        self.owns = None if owns is None else frozenset(owns)
        self.main = _ivf(d, capacity)
        self.strays = _ivf(d, capacity)
        self.list_of: dict[str, int] = {}
        # What the index holds, by file id (ascending): the standing face's key
        # (content and face), its folder's list and its stray list (-1: none).
        self.ids = np.empty(0, np.int64)
        self.keys = np.empty(0, object)
        self.lists = np.empty(0, np.int64)
        self.stray_lists = np.empty(0, np.int64)
        self.unsaved = 0  # entries changed since the last save
        self.built = False  # whether the last sync built it afresh
        self._routing: Routing | None = None
        self._row_ids = np.empty(0, np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    # -- keeping it in line with the faces -----------------------------------------------

    def _list(self, name: str) -> int:
        number = self.list_of.get(name)
        if number is None:
            number = len(self.list_of)
            self.list_of[name] = number
        return number

    def _holds(self, names: Sequence[str]) -> np.ndarray:
        if self.owns is None:
            return np.ones(len(names), bool)
        return np.array([x in self.owns for x in names], bool)

    def sync(
        self,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: Sequence[str],
        keys: Sequence[str],
        threshold: float,
    ) -> FolderIndex:
        """Bring the index in line with these faces (unit rows, file ids ascending, their
        folders and their standing faces' keys); returns the index to search: this one,
        or a fresh one where keeping this one would cost more than building."""
        routing = Routing(unit, classes, threshold)
        n_lists = len(set(self.list_of) | set(routing.names))
        if unit.shape[1] != self.d or n_lists > self.capacity:
            fresh = FolderIndex(unit.shape[1], max(1024, 2 * len(routing.names)), self.owns)
            return fresh._build(unit, ids, classes, keys, routing)
        key_arr = np.asarray(keys, dtype=object)
        cls_arr = np.asarray(classes, dtype=object)
        want_lists = np.array([self._list(c) for c in routing.names], np.int64)[routing.codes]
        pos, present = positions(self.ids, ids)
        same = present.copy()
        same[present] = (self.keys[pos[present]] == key_arr[present]) & (
            self.lists[pos[present]] == want_lists[present]
        )
        changed = np.flatnonzero(~same)
        gone = np.setdiff1d(self.ids, ids[present], assume_unique=True)
        # Strays in a folder a change touched are judged again: its centroid moved.
        touched = set(cls_arr[changed].tolist())
        if len(gone):
            old_lists = set(self.lists[np.searchsorted(self.ids, gone)].tolist())
            touched |= {c for c, number in self.list_of.items() if number in old_lists}
        if len(changed) + len(gone) > REBUILD_FRACTION * max(len(self.ids), 1):
            fresh = FolderIndex(self.d, max(self.capacity, 2 * len(routing.names)), self.owns)
            return fresh._build(unit, ids, classes, keys, routing)
        code_of = {name: i for i, name in enumerate(routing.names)}
        touched_codes = np.array([code_of[c] for c in touched if c in code_of], np.int64)
        recheck = np.flatnonzero(same & np.isin(routing.codes, touched_codes))
        self._remove(np.concatenate([gone, ids[changed]]), strays_only_of=ids[recheck])
        self._add(unit, ids, cls_arr, key_arr, want_lists, changed, recheck, routing)
        self.unsaved += len(changed) + len(gone)
        self.built = False
        self._routing, self._row_ids = routing, ids
        return self

    def _build(
        self,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: Sequence[str],
        keys: Sequence[str],
        routing: Routing,
    ) -> FolderIndex:
        want_lists = np.array([self._list(c) for c in routing.names], np.int64)[routing.codes]
        self._add(
            unit,
            ids,
            np.asarray(classes, dtype=object),
            np.asarray(keys, dtype=object),
            want_lists,
            np.arange(len(ids)),
            np.empty(0, np.int64),
            routing,
        )
        self.unsaved = len(ids)
        self.built = True
        self._routing, self._row_ids = routing, ids
        return self

    def _remove(self, file_ids: np.ndarray, strays_only_of: np.ndarray) -> None:
        faiss = _faiss()
        file_ids = np.asarray(file_ids, np.int64)
        if len(file_ids):
            self.main.remove_ids(faiss.IDSelectorArray(len(file_ids), faiss.swig_ptr(file_ids)))
        pos, ok = positions(self.ids, np.concatenate([file_ids, strays_only_of]))
        pos = pos[ok]
        had = pos[self.stray_lists[pos] >= 0]
        if len(had):
            sid = np.ascontiguousarray(self.ids[had])
            self.strays.remove_ids(faiss.IDSelectorArray(len(sid), faiss.swig_ptr(sid)))
            self.stray_lists[had] = -1
        keep = ~np.isin(self.ids, file_ids)
        self.ids, self.keys = self.ids[keep], self.keys[keep]
        self.lists, self.stray_lists = self.lists[keep], self.stray_lists[keep]

    def _add(
        self,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: np.ndarray,
        keys: np.ndarray,
        want_lists: np.ndarray,
        rows: np.ndarray,
        recheck: np.ndarray,
        routing: Routing,
    ) -> None:
        held = rows[self._holds(classes[rows].tolist())]
        if len(held):
            x = np.ascontiguousarray(unit[held], np.float32)
            fid = np.ascontiguousarray(ids[held], np.int64)
            lst = np.ascontiguousarray(want_lists[held], np.int64)
            _add_core(self.main, x, fid, lst)
        # Every row enters the bookkeeping (a shard must know what it need not hold).
        self.ids = np.concatenate([self.ids, ids[rows]])
        self.keys = np.concatenate([self.keys, keys[rows]])
        self.lists = np.concatenate([self.lists, want_lists[rows]])
        self.stray_lists = np.concatenate([self.stray_lists, np.full(len(rows), -1, np.int64)])
        order = np.argsort(self.ids, kind="stable")
        self.ids, self.keys = self.ids[order], self.keys[order]
        self.lists, self.stray_lists = self.lists[order], self.stray_lists[order]
        judge = np.concatenate([rows, recheck])
        stray_code = routing.stray_folder(unit, judge)
        has = stray_code >= 0
        if not has.any():
            return
        judge, stray_code = judge[has], stray_code[has]
        names = [routing.names[c] for c in stray_code.tolist()]
        mine = self._holds(names)
        judge, stray_code = judge[mine], stray_code[mine]
        if not len(judge):
            return
        lists = np.array([self._list(routing.names[c]) for c in stray_code.tolist()], np.int64)
        x = np.ascontiguousarray(unit[judge], np.float32)
        fid = np.ascontiguousarray(ids[judge], np.int64)
        _add_core(self.strays, x, fid, lists)
        self.stray_lists[np.searchsorted(self.ids, fid)] = lists

    # -- searching -------------------------------------------------------------------------

    def pairs(self, unit: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Unordered candidate pairs (row, row) of different folders, lower row first, one
        end among `rows` (None: every row), as an (m, 2) array; not yet scored."""
        routing = self._routing
        assert routing is not None, "sync the index first"
        n = len(unit)
        query = np.arange(n) if rows is None else np.asarray(rows, np.int64)
        code_list = np.array([self.list_of[c] for c in routing.names], np.int64)
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
            x = np.ascontiguousarray(unit[q], np.float32)
            for index, probe_codes in ((self.main, main_codes), (self.strays, stray_codes)):
                if index.ntotal == 0:
                    continue
                probes = np.where(probe_codes >= 0, code_list[probe_codes], -1)
                index.nprobe = probes.shape[1]
                lims, _, labels = index.range_search_preassigned(x, radius, probes, None)
                src = np.repeat(q, np.diff(lims.astype(np.int64)))
                dst, ok = positions(self._row_ids, labels)
                src, dst = src[ok], dst[ok]
                keep = routing.codes[src] != routing.codes[dst]
                found.append(np.stack([src[keep], dst[keep]], axis=1))
        if not found:
            return np.empty((0, 2), np.int64)
        both = np.concatenate(found)
        both = np.sort(both, axis=1)
        return np.unique(both, axis=0) if len(both) else both


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
    pairs = np.unique(np.concatenate(found), axis=0) if len(found) > 1 else found[0]
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
    """Write atomically (a crash leaves the old file or the new one, never half)."""
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
            index.main = faiss.deserialize_index(z["main"])
            index.strays = faiss.deserialize_index(z["strays"])
            index.ids = z["ids"]
            index.keys = z["keys"].astype(object)
            index.lists = z["lists"]
            index.stray_lists = z["stray_lists"]
            index.list_of = {str(x): i for i, x in enumerate(z["names"].tolist())}
    except Exception as exc:  # a torn or foreign file: rebuilt, and said
        log.warning("index %s unreadable (%s): building it again", path, exc)
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return index
