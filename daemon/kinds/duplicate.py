"""duplicate: the same file (identical bytes) in two folders: confidence 1.0. The copy that
stays is the *original*: the one in the folder whose person it is. The faces decide (the
copy's face against each folder's other faces); where they cannot tell (no face, a folder
with no other face, two folders the face matches alike), the copy stored first stays —
never the one whose path sorts first, which would quarantine a correctly filed original
whenever its stray copy's folder name sorts earlier.

Every other folder holding a copy gets one suggestion. Its copies are kept out of the
statistics: a stray copy is a misfile of the original's folder, never a stranger of its
own (the evidence says so when the faces do), and each copy would also look like a
same-person pair of its two folders. The original stays in the statistics, in its own
folder. Accepting quarantines the stray copy.

Id: `duplicate:<content hash>:<folder id of the copy>`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from daemon.kinds.base import Described, FromSnapshot, Survey, image_id
from daemon.snapshot import Snapshot
from store.scores import ANCHOR_SCORE, Calibration
from store.suggestions import SuggestionRow
from store.vocab import Kind

# The faces settle which folder a copy belongs in when its face matches that folder's
# other faces (median calibrated score) at least this well...
BELONGS = ANCHOR_SCORE
# ...and every other folder holding a copy by at least this much less.
MARGIN = 0.1


@dataclass(frozen=True)
class Copies:
    """One content filed in several folders: the copy that stays and the stray ones."""

    hash: str
    original: int  # position in snap's file lists
    strays: list[int]  # one per other folder (the first copy stored there)
    positions: list[int]  # every copy
    scores: dict[str, float | None]  # class -> the copy's face against its other faces
    by_faces: bool  # the faces chose the original (else: the copy stored first)


class Duplicate(FromSnapshot):
    kind = Kind.DUPLICATE

    def survey(
        self,
        snap: Snapshot,
        folder_of_class: dict[str, int],
        unit: np.ndarray | None = None,
        cal: Calibration | None = None,
    ) -> Survey:
        """One `duplicate` per content and folder holding a stray copy of it."""
        out = Survey()
        for c in copies(snap, unit, cal):
            home = snap.file_classes[c.original]
            # Every copy outside the original's folder leaves the statistics.
            out.left_out.update(
                int(snap.file_ids[p]) for p in c.positions if snap.file_classes[p] != home
            )
            for p in sorted(c.strays, key=lambda q: snap.file_classes[q]):
                klass = snap.file_classes[p]
                fid = folder_of_class[klass]
                sid = image_id(self.kind, c.hash, fid)
                row = SuggestionRow(
                    id=sid,
                    kind=self.kind,
                    model=None,
                    folder_a=fid,
                    folder_b=folder_of_class[home],
                    hash=c.hash,
                    file_id=int(snap.file_ids[p]),
                    rank_score=1.0,
                    strength=1.0,
                    images=2,
                    evidence=evidence(snap, c, klass),
                    class_a_name=klass,
                    class_b_name=home,
                    path_name=snap.file_paths[p],
                )
                pair = (sid, int(snap.file_ids[p]), int(snap.file_ids[c.original]), 1.0)
                out.found.append(Described(row, [pair]))
        return out


def evidence(snap: Snapshot, c: Copies, klass: str) -> str:
    home = snap.file_classes[c.original]
    text = f"the same file (identical bytes) is also {snap.file_paths[c.original]} in {home}"
    mine, theirs = c.scores.get(klass), c.scores.get(home)
    if c.by_faces and theirs is not None:
        here = (
            f"{klass}'s at {mine:.2f}"
            if mine is not None
            else f"{klass} has no other face to compare"
        )
        return (
            f"{text}, whose person it is: its face matches {home}'s other faces at "
            f"{theirs:.2f} (median score), {here}. This copy is misfiled: quarantine it, "
            f"the original stays in {home}"
        )
    said = ", ".join(
        f"{k} {v:.2f}" if v is not None else f"{k} no other face"
        for k, v in sorted(c.scores.items())
    )
    why = (
        f"the faces do not tell which folder is its person's ({said})"
        if said
        else ("no face to tell which folder is its person's")
    )
    return f"{text}; {why}: the copy stored first ({home}'s) is kept as the original"


def copies(
    snap: Snapshot, unit: np.ndarray | None = None, cal: Calibration | None = None
) -> list[Copies]:
    """Every content filed in more than one folder, with the copy that stays (by content,
    not by the order the files arrived in)."""
    # Contents held by two files or more, found in Arrow (a Python dict over every file
    # took ~2 s at 1 M files); only those are looked at one by one.
    coded = pa.array(snap.file_hashes, pa.string()).dictionary_encode()
    codes = coded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    held = np.bincount(codes[codes >= 0], minlength=len(coded.dictionary))
    shared = np.flatnonzero(held >= 2)
    if not len(shared):
        return []
    positions_of = np.flatnonzero(np.isin(codes, shared))
    by_hash: dict[str, list[int]] = defaultdict(list)
    for pos in positions_of.tolist():
        by_hash[snap.file_hashes[pos]].append(pos)
    groups = {h: ps for h, ps in by_hash.items() if len({snap.file_classes[p] for p in ps}) >= 2}
    if not groups:
        return []
    faces = _Faces(snap, unit, cal)
    seen = snap.file_first_seen
    out = []
    for h in sorted(groups):
        # Stored first, then the lower file id (stored in the same batch): never the path.
        positions = sorted(
            groups[h],
            key=lambda p: (int(seen[p]) if seen is not None else 0, int(snap.file_ids[p])),
        )
        first_in: dict[str, int] = {}
        for p in positions:
            first_in.setdefault(snap.file_classes[p], p)
        scores = {k: faces.belonging(p, h) for k, p in first_in.items()}
        known = sorted(((v, k) for k, v in scores.items() if v is not None), reverse=True)
        original = positions[0]
        by_faces = False
        if known and known[0][0] >= BELONGS:
            best, home = known[0]
            rivals = [v for v, k in known[1:]]
            if not rivals or best - rivals[0] >= MARGIN:
                original, by_faces = first_in[home], True
        strays = [p for k, p in first_in.items() if k != snap.file_classes[original]]
        out.append(Copies(h, original, strays, positions, scores, by_faces))
    return out


class _Faces:
    """How well a copy's face matches the other faces of the folder it sits in."""

    def __init__(self, snap: Snapshot, unit: np.ndarray | None, cal: Calibration | None):
        self.snap, self.unit, self.cal = snap, unit, cal
        self.members: dict[str, tuple[np.ndarray, int, int]] | None = None

    def belonging(self, pos: int, content: str) -> float | None:
        """The median score of the copy at `pos` against its folder's faces other than
        this content's; None when either side has no face."""
        unit, faces = self.unit, self.snap.faces
        if unit is None or not len(faces) or len(unit) != len(faces):
            return None
        file_id = int(self.snap.file_ids[pos])
        row = int(np.searchsorted(faces.ids, file_id))
        if row >= len(faces) or int(faces.ids[row]) != file_id:
            return None
        if self.members is None:
            # Each class's face rows, ascending, from one Arrow encoding of the classes.
            coded = pa.array(faces.classes, pa.string()).dictionary_encode()
            codes = coded.indices.to_numpy(zero_copy_only=False)
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(coded.dictionary) + 1))
            self.members = {
                str(k): (order, int(bounds[i]), int(bounds[i + 1]))
                for i, k in enumerate(coded.dictionary.to_pylist())
            }
        rows_of, lo, hi = self.members[faces.classes[row]]
        others = [r for r in rows_of[lo:hi].tolist() if faces.hashes[r] != content]
        if not others:
            return None
        cosine = unit[others] @ unit[row]
        scores = self.cal.score(cosine) if self.cal is not None else cosine
        return float(np.median(scores))


KIND = Duplicate()
