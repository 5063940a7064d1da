"""From a snapshot and its faces to the rows of the review queue: suggestions with stable
ids, their evidence in words and the image pairs behind them, and duplicates.

The statistics live in daemon/suggest.py; this module knows the store's keys: folders by
id (a rename carries a suggestion along), images by content.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from daemon.snapshot import Snapshot
from daemon.suggest import EVIDENCE_PAIRS, Models, Suggestion, suggest
from store.scores import Calibration
from store.suggestions import SuggestionRow

# A rejected suggestion comes back only when its folders hold more images than when it
# was rejected and its confidence rose by at least this much.
REOPEN_GAIN = 0.15


@dataclass
class Mistakes:
    rows: list[SuggestionRow] = field(default_factory=list)
    pairs: list[tuple[str, int, int, float]] = field(default_factory=list)
    reopen: dict[str, str] = field(default_factory=dict)
    models: Models | None = None


def find_mistakes(
    snap: Snapshot,
    unit: np.ndarray,
    rows: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    cal: Calibration,
    threshold: float,
    folder_of_class: dict[str, int],
    model: str,
    models: Models | None = None,
) -> Mistakes:
    """`unit`: the standing face of each file of snap.faces (unit length); src/dst: the
    current match lists as row indices of snap.faces."""
    out = Mistakes()
    faces = snap.faces
    copies = _copies(snap)
    extra = {int(snap.file_ids[p]) for _, _, others in copies for p in others}
    # Extra copies of one content in other folders are duplicates (below); left in, each
    # would also look like a same-person pair of its two folders.
    keep = np.array([fid not in extra for fid in faces.ids.tolist()], dtype=bool)
    kept = np.flatnonzero(keep)
    classes = [faces.classes[i] for i in kept]
    found: list[Suggestion] = []
    if len(kept) >= 3:
        names, codes = np.unique(np.asarray(classes), return_inverse=True)
        remap = np.full(len(faces), -1)
        remap[kept] = np.arange(len(kept))
        ok = (remap[src] >= 0) & (remap[dst] >= 0)
        found, out.models = suggest(
            unit[kept], codes, remap[src[ok]], remap[dst[ok]], models=models
        )
        members = defaultdict(list)
        for j, c in enumerate(codes):
            members[int(c)].append(j)
        k_unit = unit[kept]
        k_ids = faces.ids[kept]
        k_hash = [faces.hashes[i] for i in kept]
        for s in found:
            a_name = str(names[s.folder_a])
            b_name = str(names[s.folder_b]) if s.folder_b >= 0 else None
            fa = folder_of_class[a_name]
            fb = folder_of_class[b_name] if b_name is not None else None
            if s.kind == "same_person":
                lo, hi = sorted((fa, fb))  # type: ignore[type-var]
                sid = f"same:{lo}:{hi}"
                left, right = members[s.folder_a], members[s.folder_b]
                text, pairs = _block_evidence(k_unit, left, right, cal, threshold)
                text = (
                    f"{a_name} ({len(left)}) and {b_name} ({len(right)}): {text}; folder "
                    f"faces agree at {s.stat:.2f} (confidence {s.confidence:.2f})"
                )
                row = SuggestionRow(sid, s.kind, model, fa, fb, None, None, s.confidence,
                                    s.stat, s.images, text, a_name, b_name, None)
            else:
                i = s.image
                h = k_hash[i]
                sid = f"{s.kind}:{h}:{fa}"
                own = [j for j in members[s.folder_a] if j != i]
                own_text, _ = _block_evidence(k_unit, [i], own, cal, threshold)
                if s.kind == "misfiled":
                    dest = members[s.folder_b]
                    text, pairs = _block_evidence(k_unit, [i], dest, cal, threshold)
                    text = (
                        f"matches {b_name}: {text}; its own folder {a_name}: {own_text} "
                        f"(confidence {s.confidence:.2f})"
                    )
                else:
                    _, pairs = _block_evidence(k_unit, [i], own, cal, threshold)
                    text = (
                        f"matches no one in {a_name}: {own_text}; no other folder matches it "
                        f"well (confidence {s.confidence:.2f})"
                    )
                row = SuggestionRow(sid, s.kind, model, fa, fb, h, int(k_ids[i]), s.confidence,
                                    s.stat, s.images, text, a_name, b_name,
                                    faces_path(snap, int(k_ids[i])))
            out.rows.append(row)
            out.pairs.extend((sid, int(k_ids[p]), int(k_ids[q]), sc) for p, q, sc in pairs)
    _add_duplicates(snap, copies, folder_of_class, out)
    _reopen(snap, out)
    return out


def faces_path(snap: Snapshot, file_id: int) -> str:
    pos = int(np.searchsorted(snap.file_ids, file_id))
    return snap.file_paths[pos]


def _block_evidence(
    unit: np.ndarray, left: list[int], right: list[int], cal: Calibration, threshold: float
) -> tuple[str, list[tuple[int, int, float]]]:
    """"17 of 20 image pairs ≥ 0.4, median 0.63" and the best pairs, for two groups."""
    if not left or not right:
        return "no other image to compare with", []
    scores = cal.score(unit[left] @ unit[right].T)
    flat = scores.ravel()
    above = int((flat >= threshold).sum())
    text = (
        f"{above} of {len(flat)} image pair{'s' if len(flat) != 1 else ''} ≥ {threshold:g}, "
        f"median {float(np.median(flat)):.2f}, best {float(flat.max()):.2f}"
    )
    best = np.argsort(-flat)[:EVIDENCE_PAIRS]
    pairs = [
        (left[b // len(right)], right[b % len(right)], float(flat[b])) for b in best.tolist()
    ]
    return text, pairs


def _copies(snap: Snapshot) -> list[tuple[str, int, list[int]]]:
    """(hash, the first copy by path, the copies in other folders than the first's), for
    every content filed in more than one folder (positions in snap's file lists)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for pos, h in enumerate(snap.file_hashes):
        if h is not None:
            by_hash[h].append(pos)
    out = []
    for h, positions in by_hash.items():
        if len({snap.file_classes[p] for p in positions}) < 2:
            continue
        positions.sort(key=lambda p: snap.file_paths[p])
        first = positions[0]
        others = [p for p in positions[1:] if snap.file_classes[p] != snap.file_classes[first]]
        out.append((h, first, others))
    return out


def _add_duplicates(
    snap: Snapshot,
    copies: list[tuple[str, int, list[int]]],
    folder_of_class: dict[str, int],
    out: Mistakes,
) -> None:
    """One `duplicate` per content and folder holding a copy of another folder's file."""
    for h, first, others in copies:
        first_class = snap.file_classes[first]
        seen: set[str] = set()
        for p in others:
            klass = snap.file_classes[p]
            if klass in seen:
                continue
            seen.add(klass)
            fid = folder_of_class[klass]
            sid = f"duplicate:{h}:{fid}"
            text = (
                f"the same file (identical bytes) is also {snap.file_paths[first]} "
                f"in {first_class}"
            )
            out.rows.append(
                SuggestionRow(sid, "duplicate", None, fid, folder_of_class[first_class], h,
                              int(snap.file_ids[p]), 1.0, 1.0, 2, text, klass, first_class,
                              snap.file_paths[p])
            )
            out.pairs.append((sid, int(snap.file_ids[p]), int(snap.file_ids[first]), 1.0))


def _reopen(snap: Snapshot, out: Mistakes) -> None:
    """A rejected suggestion stays rejected unless its evidence grew clearly since."""
    for i, row in enumerate(out.rows):
        past = snap.decisions.get(row.id)
        if past is None or past.decision != "rejected":
            continue
        grew = row.images > (past.images or 0)
        stronger = row.rank_score >= (past.rank_score or 0.0) + REOPEN_GAIN
        if past.reopened or (grew and stronger):
            why = (
                f"back after a rejection on {past.decided_at:%Y-%m-%d}: {row.images} images "
                f"now ({past.images} then), confidence {row.rank_score:.2f} "
                f"({(past.rank_score or 0):.2f} then)"
            )
            if not past.reopened:
                out.reopen[row.id] = why
            out.rows[i] = dataclasses.replace(row, evidence=why + ". " + row.evidence)
