"""What one comparison step reads from the store, in one short connection.

Everything the computation needs is read up front (the match lists included: 1.15 M
rows at 57,637 images read in ~0.1 s), so the computation holds no connection and the
write that follows is one short transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np

from store import catalog, embeddings, folders, matches, meta, suggestions
from store.scores import Calibration
from store.vectors import normalise


@dataclass
class Snapshot:
    faces: embeddings.FaceTable
    file_ids: np.ndarray  # every file, ascending
    file_paths: list[str]
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
        files = catalog.all_files(con)
        stored = meta.get_meta(con, "model")
        left = 0
        if stored not in (None, model):
            done, total = embeddings.count_to_encode(con, model)
            left = total - done
        serving = model if stored is None or left == 0 else stored
        if cache is None:
            faces, unit = embeddings.load_faces(con, serving), None
        else:
            faces, unit = cache.read(con, serving)
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
            file_folders=files.folder_ids,
            file_first_seen=files.first_seen,
            folders=folders.load_folders(con),
            lists=matches.load_lists(con),
            calibration=matches.load_calibration(con, serving),
            compare_params=meta.get_meta(con, "compare_params"),
            unusable=embeddings.dirty_unusable(con, serving),
            decisions=suggestions.load_decisions(con),
            picks=embeddings.face_picks(con, serving),
            generation=meta.get_counter(con, "generation"),
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


class FaceCache:
    """A daemon's faces between refreshes, at unit length, so a refresh reads only the
    vectors of contents it has not seen (at 1 M × 128 every vector is 0.5 GB to read and
    normalise per refresh, for one new face).

    Safe to keep because a content's faces under a model never change once written: a
    content is encoded again only when it has no usable encoding (store/embeddings.py:
    hashes_to_encode), and the files themselves (ids, folders, contents, flags) are read
    afresh every time, without their vectors. New files get higher ids, so a refresh
    after new faces appends them to the same array (grown by doubling, not copied each
    time); a deletion or a changed content compacts it, one copy."""

    def __init__(self) -> None:
        self.cached_for: str | None = None  # the model these faces are of
        self.faces: embeddings.FaceTable | None = None
        self._buffer: np.ndarray | None = None  # unit rows; faces.vectors is its head
        self._known: dict[str, int] = {}  # content -> a file of self.faces holding it
        self._known_upto = 0  # files of self.faces entered in _known

    def read(
        self, con: duckdb.DuckDBPyConnection, model: str
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        prev = self.faces if self.cached_for == model else None
        if prev is None or len(prev) == 0 or self._buffer is None:
            faces = embeddings.load_faces(con, model)
            unit = normalise(faces.vectors) if len(faces) else faces.vectors
            return self._keep(model, faces, unit, unit)
        files = embeddings.usable_files(con, model)
        hashes = files.column("hash").to_pylist()
        ids = files.column("id").to_numpy().astype(np.int64)
        known = self._known
        missing = sorted({h for h in hashes if h not in known})
        new = embeddings.load_faces(con, model, missing) if missing else None
        m = len(prev)
        if len(ids) == m and np.array_equal(ids, prev.ids) and hashes == prev.hashes:
            # The same files and contents (folders and flags read afresh): the same faces.
            faces = self._table(
                files, prev.face_start, prev.face_count, prev.face_index, prev.boxes, prev.vectors
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
            return self._append(model, files, prev, new)
        return self._gather(model, files, hashes, ids, prev, known, new)

    def _keep(
        self, model: str, faces: embeddings.FaceTable, unit: np.ndarray, buffer: np.ndarray
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        faces.vectors = unit  # one copy of the vectors: the unit rows
        old = self.faces
        if old is None or len(faces) < len(old) or faces.hashes[: len(old)] != old.hashes:
            self._known, self._known_upto = {}, 0
        for i in range(self._known_upto, len(faces)):
            self._known.setdefault(faces.hashes[i], i)
        self._known_upto = len(faces)
        self.cached_for, self.faces, self._buffer = model, faces, buffer
        return faces, unit

    def _append(self, model, files, prev, new) -> tuple[embeddings.FaceTable, np.ndarray]:
        buffer = self._buffer
        assert buffer is not None
        used = len(prev.vectors)
        add = normalise(new.vectors)
        if used + len(add) > len(buffer) or buffer.shape[1] != add.shape[1]:
            grown = np.empty((max(2 * len(buffer), used + len(add)), add.shape[1]), np.float32)
            grown[:used] = buffer[:used]
            buffer = grown
        buffer[used : used + len(add)] = add
        unit = buffer[: used + len(add)]
        faces = self._table(
            files,
            np.r_[prev.face_start, new.face_start + used],
            np.r_[prev.face_count, new.face_count],
            np.r_[prev.face_index, new.face_index],
            np.concatenate([prev.boxes, new.boxes]),
            unit,
        )
        return self._keep(model, faces, unit, buffer)

    def _gather(
        self, model, files, hashes, ids, prev, known, new
    ) -> tuple[embeddings.FaceTable, np.ndarray]:
        """Each file's faces from whichever table holds its content, in file order."""
        p = np.array([known.get(h, -1) for h in hashes], np.int64)
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
        unit = np.empty((total, prev.vectors.shape[1]), np.float32)
        face_index = np.empty(total, np.int16)
        boxes = np.empty((total, 4), np.int32)
        unit[~src_new] = prev.vectors[old_rows]
        face_index[~src_new] = prev.face_index[old_rows]
        boxes[~src_new] = prev.boxes[old_rows]
        if len(new_rows):
            unit[src_new] = normalise(new.vectors[new_rows])
            face_index[src_new] = new.face_index[new_rows]
            boxes[src_new] = new.boxes[new_rows]
        faces = self._table(files, out_start, count, face_index, boxes, unit)
        return self._keep(model, faces, unit, unit)

    @staticmethod
    def _table(files, face_start, face_count, face_index, boxes, unit) -> embeddings.FaceTable:
        def column(name: str, dtype: type) -> np.ndarray:
            arr = files.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            return np.nan_to_num(arr, nan=0).astype(dtype)

        return embeddings.FaceTable(
            ids=files.column("id").to_numpy().astype(np.int64),
            classes=files.column("class").to_pylist(),
            hashes=files.column("hash").to_pylist(),
            dirty=files.column("dirty").to_numpy(zero_copy_only=False).astype(bool),
            candidates=column("candidates", np.int64),
            chosen=column("chosen", np.int16),
            width=column("width", np.int32),
            height=column("height", np.int32),
            face_start=np.asarray(face_start, np.int64),
            face_count=np.asarray(face_count, np.int64),
            face_index=np.asarray(face_index, np.int16),
            boxes=np.asarray(boxes, np.int32),
            vectors=unit,
        )


def positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index of each wanted id in the sorted `ids`, and whether it is there at all."""
    if len(ids) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    pos = np.clip(np.searchsorted(ids, wanted), 0, len(ids) - 1)
    return pos, ids[pos] == wanted


def assign_folders(
    snap: Snapshot,
) -> tuple[dict[int, str], np.ndarray, np.ndarray, dict[str, int]]:
    """Folder ids for the current classes: a known name keeps its id; a new name whose
    files mostly came from a name that no longer exists takes that folder's id (a rename
    carries its suggestions and decisions along); any other new name gets a new id.

    Returns (folders to write: id -> name, file ids whose folder id changes, their new
    folder ids, class -> folder id)."""
    by_name = {name: fid for fid, name in snap.folders.items()}
    current = set(snap.file_classes)
    vanished = {fid for fid, name in snap.folders.items() if name not in current}
    next_id = max(snap.folders, default=0) + 1
    to_write: dict[int, str] = {}
    of_class: dict[str, int] = {}
    origins: dict[str, Counter[int]] = {}
    for klass, fid in zip(snap.file_classes, snap.file_folders, strict=True):
        if klass not in by_name:
            origins.setdefault(klass, Counter())[int(fid)] += 1
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
    want = np.array([of_class[c] for c in snap.file_classes], dtype=np.int64)
    changed = want != snap.file_folders
    return to_write, snap.file_ids[changed], want[changed], of_class
