"""From a snapshot and its faces to the rows of the review queue, over every kind of
suggestion: suggestions with stable ids, their evidence in words and the image pairs
behind them.

A kind is one module, daemon/kinds/<kind>.py, named after its `Kind` member (store/vocab.py)
and holding `KIND`, its `SuggestionKind` (daemon/kinds/base.py). The kinds run in `Kind`'s
order. A kind the vocabulary does not know, or one without its module, raises
`UnknownKind` naming it: nothing falls through to another kind's handling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from daemon.common.content import content_keys, content_order, content_seed
from daemon.common.kindmodules import kind_module
from daemon.kinds.base import (
    EvidencePair,
    FromSnapshot,
    FromStatistics,
    Scene,
    SuggestionKind,
    Survey,
)
from daemon.kinds.stats import (
    MIN_FOLDERS,
    Found,
    Models,
    Statistics,
)
from daemon.snapshot import Snapshot, arrow_strings
from store.scores import Calibration
from store.suggestions import SuggestionRow
from store.vocab import Decision, Kind

# A rejected suggestion comes back only when its folders hold more images than when it
# was rejected and its confidence rose by at least this much.
REOPEN_GAIN = 0.15


class UnknownKind(LookupError):
    """A suggestion kind with no module: not in store/vocab.py's `Kind`, or no
    daemon/kinds/<kind>.py."""


@cache
def kind_of(kind: str) -> SuggestionKind:
    """The kind's module's `KIND`."""
    return kind_module(kind, __package__, "KIND", SuggestionKind, UnknownKind)


def kinds() -> list[SuggestionKind]:
    return [kind_of(k) for k in Kind]


@dataclass
class Suggestions:
    rows: list[SuggestionRow] = field(default_factory=list)
    pairs: list[EvidencePair] = field(default_factory=list)
    reopen: dict[str, str] = field(default_factory=dict)
    models: Models | None = None


def suggest(
    unit: np.ndarray,
    codes: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    keys: list[str] | None = None,
    models: Models | None = None,
    standing: np.ndarray | None = None,
) -> tuple[list[Found], Models | None]:
    """The kinds' tests on the faces, and the models behind them (pass them back next
    time: they are used again when the faces are exactly the same), from unit vectors,
    folder codes (0..F-1, every code used, in the folders' name order), the faces'
    content keys (their content hashes; None: their vectors' bytes) and the stored match
    lists (src, dst: indices of each image's best matches elsewhere).

    A function of the data: the faces are put in content order before anything is drawn
    and the draws are seeded from that content, so the same faces in any order (any
    file ids) give the same suggestions; `Found.image` is an index of the order given.
    `standing`: each face's number within its image, where the keys are content hashes
    (with the contents, they decide the vectors: models are then kept without them)."""
    n = len(unit)
    if n < 3:
        return [], models
    n_f = int(codes.max()) + 1
    if n_f < MIN_FOLDERS:
        # Too few folders to say how different people look: with two folders, every
        # "random" folder pair is the one pair in question.
        return [], models
    unit = np.asarray(unit, np.float32)
    if keys is None:
        # Keys made of the vectors: the seed alone says the faces are the same.
        keys = content_keys(unit)
        standing = np.zeros(0, np.int16)
    order = content_order(codes, keys)
    if np.array_equal(order, np.arange(n)):
        # In content order already (find_suggestions' faces): no copy of the vectors.
        seed = content_seed(codes, keys)
        stats = Statistics(unit, codes, src, dst, models, seed, standing)
    else:
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        codes = codes[order]
        seed = content_seed(codes, [keys[i] for i in order.tolist()])
        stats = Statistics(
            unit[order],
            codes,
            rank[src],
            rank[dst],
            models,
            seed,
            None if standing is None else standing[order] if len(standing) else standing,
        )
    found = [f for k in kinds() if isinstance(k, FromStatistics) for f in k.find(stats)]
    return [
        dataclasses.replace(
            f,
            image=int(order[f.image]) if f.image >= 0 else f.image,
            group=tuple(int(order[i]) for i in f.group),
        )
        for f in _one_per_image(found)
    ], stats.models


def _one_per_image(found: list[Found]) -> list[Found]:
    """An image gets one suggestion: the likeliest of those the kinds make of it (the
    earlier kind on a tie). Folder suggestions first, then images in content order."""
    folders = [f for f in found if f.image < 0]
    best: dict[int, Found] = {}
    for f in found:
        if f.image >= 0 and (f.image not in best or f.confidence > best[f.image].confidence):
            best[f.image] = f
    return folders + [best[i] for i in sorted(best)]


def find_suggestions(
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
) -> Suggestions:
    """`unit`: the standing face of each file of snap.faces (unit length); src/dst: the
    current match lists as row indices of snap.faces."""
    out = Suggestions()
    surveys: list[Survey] = [
        k.survey(snap, folder_of_class, unit, cal) for k in kinds() if isinstance(k, FromSnapshot)
    ]
    left_out = set().union(*(s.left_out for s in surveys))
    faces = snap.faces
    keep = ~np.isin(faces.ids, np.fromiter(left_out, np.int64, len(left_out)))
    kept = np.flatnonzero(keep)
    # By folder, content and path, never by file id (ids follow the order files arrived
    # in): the statistics, the members' lists and the evidence pairs all see the same
    # faces in the same order however the store was built. Arrow's sort compares UTF-8
    # bytes, which orders as Python's code points do, and is stable; at 1 M faces it
    # takes a tenth of sorting joined strings in Python.
    positions = np.searchsorted(snap.file_ids, faces.ids[kept])
    classes_all = pa.array(faces.classes, pa.string())
    hashes_all = pa.array(faces.hashes, pa.string())
    kept_idx = pa.array(kept)
    table = pa.table(
        {
            "c": classes_all.take(kept_idx),
            "h": hashes_all.take(kept_idx),
            "p": arrow_strings(snap.file_paths).take(pa.array(positions)),
        }
    )
    order = pc.sort_indices(table, [("c", "ascending"), ("h", "ascending"), ("p", "ascending")])
    kept = kept[order.to_numpy()]
    if len(kept) >= 3:
        kept_idx = pa.array(kept)
        classes = classes_all.take(kept_idx)
        # Sorted by class already: a folder's code is the count of class changes before it
        # (np.unique's codes, without sorting the names again).
        new_class = np.r_[True, pc.not_equal(classes[1:], classes[:-1]).to_numpy(False)]
        codes = np.cumsum(new_class) - 1
        starts = np.flatnonzero(new_class)
        names = np.asarray(classes.take(pa.array(starts)).to_pylist())
        # The faces' own strings, not a million new ones per run (they would stay in the
        # daemon's heap as fragments between refreshes).
        hashes = [faces.hashes[i] for i in kept.tolist()]
        remap = np.full(len(faces), -1)
        remap[kept] = np.arange(len(kept))
        ok = (remap[src] >= 0) & (remap[dst] >= 0)
        kept_unit = unit[kept]
        found, out.models = suggest(
            kept_unit,
            codes,
            remap[src[ok]],
            remap[dst[ok]],
            keys=hashes,
            models=models,
            standing=faces.face_index[rows[kept]],
        )
        scene = Scene(
            snap,
            kept_unit,
            faces.ids[kept],
            hashes,
            names,
            FolderMembers(np.r_[starts, len(kept)]),
            folder_of_class,
            cal,
            threshold,
            model,
        )
        for f in found:
            kind = kind_of(f.kind)
            assert isinstance(kind, FromStatistics)
            said = kind.describe(f, scene)
            out.rows.append(said.row)
            out.pairs.extend(said.pairs)
    for survey in surveys:
        for said in survey.found:
            out.rows.append(said.row)
            out.pairs.extend(said.pairs)
    _by_name(snap, folder_of_class, out)
    _reopen(snap, out)
    return out


class FolderMembers(Mapping[int, list[int]]):
    """Folder code -> its face indices, for faces sorted by folder: a folder's faces are
    one run, so the lists are made when a suggestion's words ask for them (a dict of
    lists over every face took ~0.5 s at 1 M faces)."""

    def __init__(self, bounds: np.ndarray):
        self._bounds = bounds  # folder f's faces: bounds[f] .. bounds[f + 1]

    def __getitem__(self, code: int) -> list[int]:
        if not 0 <= code < len(self._bounds) - 1:
            return []
        return list(range(int(self._bounds[code]), int(self._bounds[code + 1])))

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self._bounds) - 1))

    def __len__(self) -> int:
        return len(self._bounds) - 1


def _by_name(snap: Snapshot, folder_of_class: dict[str, int], out: Suggestions) -> None:
    """Suggestions a kind makes certain by the folders' names (one name in two Unicode
    forms); what the faces said of the same suggestion, if anything, follows."""
    at = {row.id: i for i, row in enumerate(out.rows)}
    for kind in kinds():
        for said in kind.by_name(snap, folder_of_class):
            row = said.row
            if row.id in at:
                found = out.rows[at[row.id]]
                out.rows[at[row.id]] = dataclasses.replace(
                    row, evidence=f"{row.evidence}; the faces: {found.evidence}"
                )
            else:
                out.rows.append(row)
            out.pairs.extend(said.pairs)


def _reopen(snap: Snapshot, out: Suggestions) -> None:
    """A rejected suggestion stays rejected unless its evidence grew clearly since."""
    for i, row in enumerate(out.rows):
        past = snap.decisions.get(row.id)
        if past is None or past.decision != Decision.REJECTED:
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
