"""What one comparison step reads from the store, in one short connection.

Everything the computation needs is read up front (the match lists included: 1.15 M
rows at 57,637 images read in ~0.1 s), so the computation holds no connection and the
write that follows is one short transaction.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import compress
from typing import overload

import duckdb
import numpy as np
import pyarrow as pa

from store import catalog, embeddings, folders, matches, meta, suggestions
from store.scores import Calibration
from store.vectors import normalise


@dataclass
class Snapshot:
    faces: embeddings.FaceTable
    file_ids: np.ndarray  # every file, ascending
    file_paths: Sequence[str]  # a list, or Paths (a daemon's kept files)
    file_classes: list[str]
    file_hashes: list[str | None]
    file_folders: np.ndarray  # stored folder id per file, -1 where none yet
    folders: dict[int, str]
    lists: tuple[np.ndarray, np.ndarray, np.ndarray]  # stored (src id, dst id, cosine)
    calibration: Calibration | None
    compare_params: str | None
    unusable: list[int]
    decisions: dict[str, suggestions.PastDecision]
    picks: dict[tuple[str, str], int]
    generation: int
    suggested_at: str | None
    stored_model: str | None  # the model whose pairs the store holds
    serving: str  # the model this refresh computes with
    switch_left: int  # contents the configured model has yet to encode
    configured: str  # the model the settings ask for
    file_first_seen: np.ndarray | None = None  # epoch microseconds per file
    # Each file's class as a code into class_names (any order): folder assignment and
    # the comparison's codes are array operations on them (None: made from file_classes).
    file_class_codes: np.ndarray | None = None
    class_names: list[str] | None = None

    @property
    def switching(self) -> bool:
        return self.serving != self.configured

    # The faces at unit length (compare.normalise of faces.vectors, row by row): set
    # where the snapshot came through a FaceCache, whose faces.vectors is this array.
    unit_faces: np.ndarray | None = None

    @classmethod
    def read(
        cls, con: duckdb.DuckDBPyConnection, model: str, cache: FaceCache | None = None
    ) -> Snapshot:
        """`model`: the configured one. The store serves the model it holds until the
        configured one has encoded every content (a model switch re-encodes in the
        background); then this snapshot serves the new one. `cache`: a daemon's faces
        from its last snapshot; then only the vectors of contents it lacks are read."""
        stored = meta.get_meta(con, "model")
        left = 0
        if stored not in (None, model):
            done, total = embeddings.count_to_encode(con, model)
            left = total - done
        serving = model if stored is None or left == 0 else stored
        generation = meta.get_counter(con, "generation")
        if cache is None:
            files = Files.read(con, serving)
            faces, unit = embeddings.load_faces(con, serving), None
        else:
            files, faces, unit = cache.read(con, serving, generation)
        return cls(
            unit_faces=unit,
            stored_model=stored,
            serving=serving,
            switch_left=left,
            configured=model,
            faces=faces,
            file_ids=files.ids,
            file_paths=files.paths,
            file_classes=files.classes,
            file_hashes=files.hashes,
            file_folders=files.flags.folder_ids,
            file_first_seen=files.first_seen,
            file_class_codes=files.class_codes,
            class_names=files.names,
            folders=folders.load_folders(con),
            lists=matches.load_lists(con),
            calibration=matches.load_calibration(con, serving),
            compare_params=meta.get_meta(con, "compare_params"),
            unusable=embeddings.dirty_unusable(con, serving),
            decisions=suggestions.load_decisions(con),
            picks=embeddings.face_picks(con, serving),
            generation=generation,
            suggested_at=meta.get_meta(con, "suggested_at"),
        )

    def generation_key(self) -> str:
        return f"{self.generation}:{self.serving}"

    def stored_lists_in(
        self, ids: np.ndarray
    ) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """compare.incremental_lists' view of the stored lists, as row indices of `ids`:
        the lists of every source holding one of `holding`, and of `sources`."""
        src_id, dst_id, cos = self.lists
        src, s_ok = positions(ids, src_id)
        dst, d_ok = positions(ids, dst_id)
        ok = s_ok & d_ok
        src, dst, cos = src[ok], dst[ok], cos[ok]

        def stored(holding: np.ndarray, sources: np.ndarray):
            holders = np.unique(src[np.isin(dst, holding)])
            want = np.isin(src, np.concatenate([holders, np.asarray(sources, np.int64)]))
            return src[want], dst[want], cos[want]

        return stored


class Paths(Sequence[str]):
    """Every file's path, held as one Arrow array (at 1 M files ~30 MB, where a list of
    Python strings took ~90 MB of the daemon's memory between refreshes)."""

    def __init__(self, arrow: pa.Array):
        self.arrow = arrow

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return self.arrow[i].to_pylist()
        return self.arrow[int(i)].as_py()

    def __len__(self) -> int:
        return len(self.arrow)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Paths):
            return self.arrow.equals(other.arrow)
        if isinstance(other, list):
            return self.arrow.to_pylist() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def arrow_strings(values: Sequence[str]) -> pa.Array:
    """The values as an Arrow string array (a Paths' own, without a copy)."""
    return values.arrow if isinstance(values, Paths) else pa.array(list(values), pa.string())


@dataclass
class Files:
    """Every file as a refresh sees it, in id order: the columns only a scan, an
    encoding or a pick changes (kept by a daemon between refreshes: `delta`), and the
    flags each refresh writes (`flags`, read every time: numbers only)."""

    ids: np.ndarray
    paths: Paths
    classes: list[str]
    hashes: list[str | None]
    first_seen: np.ndarray  # epoch microseconds
    usable: np.ndarray  # bool: its content has a usable encoding under the model
    width: np.ndarray  # int32, 0 where unknown
    height: np.ndarray
    class_codes: np.ndarray  # int64 into names
    names: list[str]
    flags: catalog.FileFlags
    # Rows read since the files were last read (by position; None: all of them).
    touched: np.ndarray | None = None

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection, model: str) -> Files:
        """Every file, read whole."""
        flags = catalog.file_flags(con)
        table = embeddings.file_columns(con, model)
        classes = table.column("class").combine_chunks()
        coded = classes.dictionary_encode()
        codes = coded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        names = coded.dictionary.to_pylist()
        files = cls(
            table.column("id").to_numpy().astype(np.int64),
            Paths(table.column("path").combine_chunks()),
            # One string per folder, not per file (~60 MB fewer at 1 M files).
            [names[c] for c in codes.tolist()],
            table.column("hash").to_pylist(),
            table.column("first_seen").to_numpy().astype(np.int64),
            table.column("usable").to_numpy(zero_copy_only=False).astype(bool),
            table.column("width").to_numpy().astype(np.int32),
            table.column("height").to_numpy().astype(np.int32),
            codes,
            names,
            flags,
        )
        if not np.array_equal(files.ids, flags.ids):
            # Not possible within one read-only open; said loudly rather than misaligned.
            raise RuntimeError("the files changed between two reads of one snapshot")
        return files

    def delta(self, con: duckdb.DuckDBPyConnection, model: str) -> Files | None:
        """These files brought up to date with the store, reading only the rows a writer
        touched since they were read (dirty, or seen since the latest last_seen read),
        or None where the store does not add up that way (then read it whole)."""
        flags = catalog.file_flags(con)
        since = self.flags.last_seen
        if since is None:
            return None
        table = embeddings.file_columns(con, model, since)
        d_ids = table.column("id").to_numpy().astype(np.int64)
        now = flags.ids
        m = len(self.ids)
        # Files only added (the common case) need no set operation over every file.
        if len(now) >= m and np.array_equal(now[:m], self.ids):
            kept = np.ones(m, bool)
        else:
            kept = np.isin(self.ids, now)
        fresh = ~_among(d_ids, self.ids)
        # Every file the store holds is one of these or was touched (new ids are higher).
        n_old = int(kept.sum())
        if n_old + int(fresh.sum()) != len(now) or (
            fresh.any() and n_old and d_ids[fresh].min() <= self.ids[kept].max()
        ):
            return None
        d_paths = table.column("path").combine_chunks()
        d_classes = table.column("class").to_pylist()
        d_hashes = table.column("hash").to_pylist()
        d_first = table.column("first_seen").to_numpy().astype(np.int64)
        d_usable = table.column("usable").to_numpy(zero_copy_only=False).astype(bool)
        d_width = table.column("width").to_numpy().astype(np.int32)
        d_height = table.column("height").to_numpy().astype(np.int32)
        names = self.names
        code_of = {name: i for i, name in enumerate(names)} if d_classes else {}
        d_codes = np.empty(len(d_classes), np.int64)
        for i, klass in enumerate(d_classes):
            code = code_of.get(klass)
            if code is None:
                if names is self.names:
                    names = list(names)
                code = code_of[klass] = len(names)
                names.append(klass)
            d_codes[i] = code
        d_classes = [names[c] for c in d_codes.tolist()]

        def lists(old: list, new: list) -> list:
            out = old if kept.all() else list(compress(old, kept.tolist()))
            if out is old and (len(new) or touched.any()):
                out = list(old)  # a copy: an earlier snapshot may still hold `old`
            for p, v in zip(at.tolist(), compress(new, touched.tolist()), strict=True):
                out[p] = v
            out.extend(compress(new, fresh.tolist()))
            return out

        def arrays(old: np.ndarray, new: np.ndarray) -> np.ndarray:
            out = old[kept] if not kept.all() else old.copy()
            out[at] = new[touched]
            return np.concatenate([out, new[fresh]])

        # Touched rows the cache holds, replaced where they now stand.
        touched = ~fresh
        ids_kept = self.ids[kept]
        at = np.searchsorted(ids_kept, d_ids[touched])
        files = Files(
            np.concatenate([ids_kept, d_ids[fresh]]),
            self._paths(kept, touched, fresh, at, d_paths),
            lists(self.classes, d_classes),
            lists(self.hashes, d_hashes),
            arrays(self.first_seen, d_first),
            arrays(self.usable, d_usable),
            arrays(self.width, d_width),
            arrays(self.height, d_height),
            arrays(self.class_codes, d_codes),
            names,
            flags,
            np.r_[at, n_old + np.arange(int(fresh.sum()))].astype(np.int64),
        )
        return files if np.array_equal(files.ids, flags.ids) else None

    def _paths(
        self,
        kept: np.ndarray,
        touched: np.ndarray,
        fresh: np.ndarray,
        at: np.ndarray,
        new: pa.Array,
    ) -> Paths:
        """The kept paths, the touched rows' replaced where they stand, the new ones after."""
        if kept.all() and not len(new):
            return self.paths
        base = self.paths.arrow if kept.all() else self.paths.arrow.filter(pa.array(kept))
        rows = np.arange(len(base), dtype=np.int64)
        rows[at] = len(base) + np.flatnonzero(touched)
        rows = np.r_[rows, len(base) + np.flatnonzero(fresh)]
        both = pa.concat_arrays([base, new.cast(base.type)]) if len(new) else base
        return Paths(both.take(pa.array(rows)))

    def with_flags(self, flags: catalog.FileFlags) -> Files:
        """The same rows, the flags read again: nothing touched."""
        return dataclasses.replace(self, flags=flags, touched=np.empty(0, np.int64))


class FaceCache:
    """A daemon's files and faces between refreshes, the faces at unit length, so a
    refresh reads only what changed: the vectors of contents it has not seen (at 1 M ×
    128 every vector is 0.5 GB to read and normalise per refresh, for one new face), and
    the file rows a writer touched since (`Files.delta`; their paths, classes and
    contents as Python strings took ~2 s at 1 M files).

    Safe to keep because a content's faces under a model never change once written: a
    content is encoded again only when it has no usable encoding (store/embeddings.py:
    hashes_to_encode), and every writer of the columns kept marks what it changed: a
    scan sets `last_seen` on each file it adds or updates, an encoding or a pick marks
    its files dirty, and each such writer bumps the store's generation. While the
    generation stays (only refreshes wrote, and they write the flags, which are read
    every time) no file row is read; otherwise only the touched ones are, and anything
    that does not add up is read whole (`forget_files` asks for that: the pipeline's
    full scans do, so a row changed by hand, `facelint sql --write`, is seen by the next
    reconcile at the latest). New files get higher ids, so a refresh after new faces
    appends them to the same array (grown by a 32nd, not copied each time); a
    deletion or a changed content compacts it, one copy."""

    # Spare rows the vectors' array grows by, as a share of its size: a 32nd keeps the
    # daemon's memory near one copy of the vectors (doubling held up to two), and at
    # 1 M faces leaves room for 31,000 new ones before the array is copied.
    GROWTH = 32
    SPARE = 64  # and at least this many: a small set grows by more than one face

    def __init__(self) -> None:
        self.cached_for: str | None = None  # the model these faces are of
        self.faces: embeddings.FaceTable | None = None
        self._buffer: np.ndarray | None = None  # unit rows; faces.vectors is its head
        # The contents of self.faces (a set, not a dict of positions: ~60 MB fewer at 1 M
        # faces; the rare compaction finds positions itself).
        self._known: set[str] = set()
        self._known_upto = 0  # files of self.faces entered in _known
        self._files: Files | None = None
        self._files_at: int | None = None  # the generation _files were read at

    def forget_files(self) -> None:
        """Read every file row again next time (the vectors stay)."""
        self._files = None

    def read(
        self, con: duckdb.DuckDBPyConnection, model: str, generation: int
    ) -> tuple[Files, embeddings.FaceTable, np.ndarray]:
        if self.cached_for != model:
            self._files = None
        old = self._files
        files: Files | None = None
        if old is not None and generation == self._files_at:
            flags = catalog.file_flags(con)
            if np.array_equal(flags.ids, old.ids):
                files = old.with_flags(flags)
        elif old is not None:
            files = old.delta(con, model)
        if files is None:
            files = Files.read(con, model)
        self._files, self._files_at = files, generation
        faces, unit = self._faces(con, model, files)
        return self._files, faces, unit

    def _faces(
        self, con: duckdb.DuckDBPyConnection, model: str, files: Files
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        prev = self.faces if self.cached_for == model else None
        if prev is None or len(prev) == 0 or self._buffer is None:
            faces = embeddings.load_faces(con, model)
            self._files = files = self._trimmed(files, faces)
            if not len(faces):
                return self._keep(model, faces, faces.vectors, faces.vectors)
            # Room for new faces from the start: the first one then copies nothing.
            n, d = faces.vectors.shape
            buffer = np.empty((n + n // self.GROWTH + self.SPARE, d), np.float32)
            buffer[:n] = normalise(faces.vectors)
            faces.vectors = np.empty((0, d), np.float32)  # the raw rows go now
            return self._keep(model, faces, buffer[:n], buffer)
        usable = np.flatnonzero(files.usable)
        ids = _rows(files.ids, usable)
        hashes = _subset(files.hashes, files.usable, usable)
        known = self._known
        if files.touched is None:
            wanted = hashes
        else:
            # Only a row a writer touched can hold a content not seen before.
            wanted = [files.hashes[i] for i in files.touched.tolist() if files.usable[i]]
        missing = sorted({h for h in wanted if h is not None and h not in known})
        new = embeddings.load_faces(con, model, missing) if missing else None
        if new is not None and len(set(new.hashes)) < len(missing):
            # A usable status without a face row: such a file has no face to compare
            # (load_faces leaves it out), so it is not usable here either.
            faced = set(new.hashes) | set(known)
            files = dataclasses.replace(
                files, usable=files.usable & np.array([h in faced for h in files.hashes])
            )
            self._files = files
            usable = np.flatnonzero(files.usable)
            ids = files.ids[usable]
            hashes = _subset(files.hashes, files.usable, usable)
        m = len(prev)
        if len(ids) == m and np.array_equal(ids, prev.ids) and hashes == prev.hashes:
            # The same files and contents (folders and flags read afresh): the same faces.
            faces = self._table(
                files,
                usable,
                hashes,
                prev.face_start,
                prev.face_count,
                prev.face_index,
                prev.boxes,
                prev.vectors,
            )
            return self._keep(model, faces, prev.vectors, self._buffer)
        appended = (
            len(ids) >= m
            and np.array_equal(ids[:m], prev.ids)
            and hashes[:m] == prev.hashes
            and new is not None
            and len(new) == len(ids) - m
            and np.array_equal(new.ids, ids[m:])
        )
        if appended:
            assert new is not None
            return self._append(model, files, usable, hashes, prev, new)
        return self._gather(model, files, usable, hashes, ids, prev, new)

    @staticmethod
    def _trimmed(files: Files, faces: embeddings.FaceTable) -> Files:
        """`files` with only the faced files usable, as load_faces says."""
        usable = np.isin(files.ids, faces.ids)
        if np.array_equal(usable, files.usable):
            return files
        return dataclasses.replace(files, usable=usable)

    def _keep(
        self, model: str, faces: embeddings.FaceTable, unit: np.ndarray, buffer: np.ndarray
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        faces.vectors = unit  # one copy of the vectors: the unit rows
        old = self.faces
        if (
            old is None
            or len(faces) < len(old)
            or (faces.hashes is not old.hashes and faces.hashes[: len(old)] != old.hashes)
        ):
            self._known, self._known_upto = set(), 0
        self._known.update(faces.hashes[self._known_upto :])
        self._known_upto = len(faces)
        self.cached_for, self.faces, self._buffer = model, faces, buffer
        return faces, unit

    def _append(
        self, model, files, usable, hashes, prev, new
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        buffer = self._buffer
        assert buffer is not None
        used = len(prev.vectors)
        add = normalise(new.vectors)
        if used + len(add) > len(buffer) or buffer.shape[1] != add.shape[1]:
            size = used + len(add)
            grown = np.empty((size + size // self.GROWTH + self.SPARE, add.shape[1]), np.float32)
            grown[:used] = buffer[:used]
            buffer = grown
        buffer[used : used + len(add)] = add
        unit = buffer[: used + len(add)]
        faces = self._table(
            files,
            usable,
            hashes,
            np.r_[prev.face_start, new.face_start + used],
            np.r_[prev.face_count, new.face_count],
            np.r_[prev.face_index, new.face_index],
            np.concatenate([prev.boxes, new.boxes]),
            unit,
        )
        return self._keep(model, faces, unit, buffer)

    def _gather(
        self, model, files, usable, hashes, ids, prev, new
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        """Each file's faces from whichever table holds its content, in file order."""
        first: dict[str, int] = {}
        for i, h in enumerate(prev.hashes):
            first.setdefault(h, i)
        p = np.array([first.get(h, -1) for h in hashes], np.int64)
        from_new = p < 0
        start = np.empty(len(ids), np.int64)
        count = np.empty(len(ids), np.int64)
        start[~from_new] = prev.face_start[p[~from_new]]
        count[~from_new] = prev.face_count[p[~from_new]]
        if from_new.any():
            fresh = dict(zip(new.ids.tolist(), range(len(new)), strict=True))
            q = np.array([fresh[f] for f in ids[from_new].tolist()], np.int64)
            start[from_new] = new.face_start[q]
            count[from_new] = new.face_count[q]
        out_start = np.r_[0, np.cumsum(count)[:-1]].astype(np.int64)
        total = int(count.sum())
        src = np.repeat(start - out_start, count) + np.arange(total)
        src_new = np.repeat(from_new, count)
        old_rows, new_rows = src[~src_new], src[src_new]
        # The old array goes before the new one is kept: one copy of the vectors.
        self._buffer = None
        spare = total // self.GROWTH + self.SPARE
        buffer = np.empty((total + spare, prev.vectors.shape[1]), np.float32)
        unit = buffer[:total]
        face_index = np.empty(total, np.int16)
        boxes = np.empty((total, 4), np.int32)
        unit[~src_new] = prev.vectors[old_rows]
        face_index[~src_new] = prev.face_index[old_rows]
        boxes[~src_new] = prev.boxes[old_rows]
        if len(new_rows):
            unit[src_new] = normalise(new.vectors[new_rows])
            face_index[src_new] = new.face_index[new_rows]
            boxes[src_new] = new.boxes[new_rows]
        faces = self._table(files, usable, hashes, out_start, count, face_index, boxes, unit)
        return self._keep(model, faces, unit, buffer)

    @staticmethod
    def _table(
        files: Files,
        usable: np.ndarray,
        hashes: list,
        face_start,
        face_count,
        face_index,
        boxes,
        unit,
    ) -> embeddings.FaceTable:
        flags = files.flags
        return embeddings.FaceTable(
            ids=_rows(files.ids, usable),
            classes=_subset(files.classes, files.usable, usable),
            hashes=hashes,
            dirty=_rows(flags.dirty, usable),
            candidates=_rows(flags.candidates, usable),
            chosen=_rows(flags.chosen, usable),
            width=_rows(files.width, usable),
            height=_rows(files.height, usable),
            face_start=np.asarray(face_start, np.int64),
            face_count=np.asarray(face_count, np.int64),
            face_index=np.asarray(face_index, np.int16),
            boxes=np.asarray(boxes, np.int32),
            vectors=unit,
        )


def _among(values: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """Whether each value is one of sorted_ids (a few values against many ids)."""
    if len(sorted_ids) == 0:
        return np.zeros(len(values), bool)
    pos = np.clip(np.searchsorted(sorted_ids, values), 0, len(sorted_ids) - 1)
    return sorted_ids[pos] == values


def _rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values at rows: the array itself where every row is in (no copy)."""
    return values if len(rows) == len(values) else values[rows]


def _subset(values: list, mask: np.ndarray, rows: np.ndarray) -> list:
    """values at rows (mask's true rows): the list itself where every row is in."""
    return values if len(rows) == len(values) else list(compress(values, mask.tolist()))


def positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index of each wanted id in the sorted `ids`, and whether it is there at all."""
    if len(ids) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    pos = np.clip(np.searchsorted(ids, wanted), 0, len(ids) - 1)
    return pos, ids[pos] == wanted


def class_codes(snap: Snapshot) -> tuple[np.ndarray, list[str]]:
    """Each file's class as a code into a list of names (any order): the snapshot's,
    or made from its classes."""
    if snap.file_class_codes is not None and snap.class_names is not None:
        return snap.file_class_codes, snap.class_names
    if not snap.file_classes:
        return np.empty(0, np.int64), []
    coded = pa.array(snap.file_classes, pa.string()).dictionary_encode()
    return (
        coded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        coded.dictionary.to_pylist(),
    )


def face_codes(snap: Snapshot) -> np.ndarray:
    """Folder codes of the faces' files, 0.. in the classes' name order (what np.unique
    of faces.classes gives), from the files' class codes: no string is sorted but the
    names."""
    faces = snap.faces
    if len(faces) == 0:
        return np.empty(0, np.int64)
    codes, names = class_codes(snap)
    pos, _ = positions(snap.file_ids, faces.ids)
    of_face = codes[pos]
    used = np.zeros(len(names), bool)
    used[of_face] = True
    present = np.flatnonzero(used)
    rank = np.empty(len(names), np.int64)
    rank[sorted(present.tolist(), key=names.__getitem__)] = np.arange(len(present))
    return rank[of_face]


def assign_folders(
    snap: Snapshot,
) -> tuple[dict[int, str], np.ndarray, np.ndarray, dict[str, int]]:
    """Folder ids for the current classes: a known name keeps its id; a new name whose
    files mostly came from a name that no longer exists takes that folder's id (a rename
    carries its suggestions and decisions along); any other new name gets a new id.

    Returns (folders to write: id -> name, file ids whose folder id changes, their new
    folder ids, class -> folder id)."""
    by_name = {name: fid for fid, name in snap.folders.items()}
    codes, names = class_codes(snap)
    present = np.flatnonzero(np.bincount(codes, minlength=len(names)))
    current = {names[c] for c in present.tolist()}
    vanished = {fid for fid, name in snap.folders.items() if name not in current}
    next_id = max(snap.folders, default=0) + 1
    to_write: dict[int, str] = {}
    of_class: dict[str, int] = {}
    origins: dict[str, Counter[int]] = {}
    is_new = np.zeros(len(names), bool)
    is_new[[c for c in present.tolist() if names[c] not in by_name]] = True
    # Only the files of new names say where they came from, in file order.
    for i in np.flatnonzero(is_new[codes]).tolist():
        origins.setdefault(names[codes[i]], Counter())[int(snap.file_folders[i])] += 1
    for klass in sorted(current):
        if klass in by_name:
            of_class[klass] = by_name[klass]
            continue
        source = origins.get(klass, Counter())
        fid, count = source.most_common(1)[0] if source else (-1, 0)
        if fid in vanished and count * 2 > sum(source.values()):
            vanished.discard(fid)
        else:
            fid = next_id
            next_id += 1
        of_class[klass] = fid
        to_write[fid] = klass
    fid_of_code = np.full(len(names), -1, np.int64)
    for c in present.tolist():
        fid_of_code[c] = of_class[names[c]]
    want = fid_of_code[codes]
    changed = want != snap.file_folders
    return to_write, snap.file_ids[changed], want[changed], of_class
