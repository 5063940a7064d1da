"""duplicate: the same file (identical bytes) in two folders: confidence 1.0, no model
needed. The first copy by path stays; every other folder holding a copy gets one
suggestion, and its copies are kept out of the statistics (each would also look like a
same-person pair of its two folders). Accepting quarantines the copy.

Id: `duplicate:<content hash>:<folder id of the copy>`.
"""

from __future__ import annotations

from collections import defaultdict

from daemon.kinds.base import Described, FromSnapshot, Survey, image_id
from daemon.snapshot import Snapshot
from store.suggestions import SuggestionRow
from store.vocab import Kind


class Duplicate(FromSnapshot):
    kind = Kind.DUPLICATE

    def survey(self, snap: Snapshot, folder_of_class: dict[str, int]) -> Survey:
        """One `duplicate` per content and folder holding a copy of another folder's file."""
        out = Survey()
        for h, first, others in copies(snap):
            out.left_out.update(int(snap.file_ids[p]) for p in others)
            first_class = snap.file_classes[first]
            seen: set[str] = set()
            for p in others:
                klass = snap.file_classes[p]
                if klass in seen:
                    continue
                seen.add(klass)
                fid = folder_of_class[klass]
                sid = image_id(self.kind, h, fid)
                text = (
                    f"the same file (identical bytes) is also {snap.file_paths[first]} "
                    f"in {first_class}"
                )
                row = SuggestionRow(
                    id=sid,
                    kind=self.kind,
                    model=None,
                    folder_a=fid,
                    folder_b=folder_of_class[first_class],
                    hash=h,
                    file_id=int(snap.file_ids[p]),
                    rank_score=1.0,
                    strength=1.0,
                    images=2,
                    evidence=text,
                    class_a_name=klass,
                    class_b_name=first_class,
                    path_name=snap.file_paths[p],
                )
                pair = (sid, int(snap.file_ids[p]), int(snap.file_ids[first]), 1.0)
                out.found.append(Described(row, [pair]))
        return out


def copies(snap: Snapshot) -> list[tuple[str, int, list[int]]]:
    """(hash, the first copy by path, the copies in other folders than the first's), for
    every content filed in more than one folder (positions in snap's file lists)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for pos, h in enumerate(snap.file_hashes):
        if h is not None:
            by_hash[h].append(pos)
    out = []
    for h, positions in by_hash.items():
        if len(positions) < 2 or len({snap.file_classes[p] for p in positions}) < 2:
            continue
        positions.sort(key=lambda p: snap.file_paths[p])
        first = positions[0]
        others = [p for p in positions[1:] if snap.file_classes[p] != snap.file_classes[first]]
        out.append((h, first, others))
    # By content, not by the order the files arrived in (few entries: cheap to sort).
    out.sort(key=lambda entry: entry[0])
    return out


KIND = Duplicate()
