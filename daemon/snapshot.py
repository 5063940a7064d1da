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

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection, model: str) -> Snapshot:
        """`model`: the configured one. The store serves the model it holds until the
        configured one has encoded every content (a model switch re-encodes in the
        background); then this snapshot serves the new one."""
        files = catalog.all_files(con)
        stored = meta.get_meta(con, "model")
        left = 0
        if stored not in (None, model):
            done, total = embeddings.count_to_encode(con, model)
            left = total - done
        serving = model if stored is None or left == 0 else stored
        return cls(
            stored_model=stored,
            serving=serving,
            switch_left=left,
            configured=model,
            faces=embeddings.load_faces(con, serving),
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
