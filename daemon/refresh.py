"""The refresh step: `Snapshot → compute(snapshot, settings) → Plan → write`.

A snapshot is read in one short read-only connection; `compute` is a pure function of it
(faces chosen, the calibration, match lists), holding no connection; `write_plan` writes
the plan in one transaction, only if the store's `generation` counter still says what the
snapshot saw (otherwise the caller computes again). Pairs commit first (queryable); the
review queue is computed from the same snapshot (`suggest`, also pure) and follows in its
own short write, so a new face never waits for the suggestions.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from daemon import calibration as calib
from daemon import compare
from daemon.common.stats import changed_past
from daemon.config import Settings
from daemon.encoders import registry
from daemon.faces import choose_faces
from daemon.index import centroids, use_index
from daemon.index.keeper import Keeper, StandingKeys
from daemon.kinds import Suggestions, find_suggestions
from daemon.snapshot import Snapshot, assign_folders, face_codes, positions
from store import catalog, folders, matches, meta, suggestions
from store.clock import utcnow
from store.scores import ANCHOR_SCORE, Calibration

log = logging.getLogger("facelint.refresh")

# Rescore every pair when the calibration moved any score by more than this.
RESCORE_TOLERANCE = 0.01
# Under candidates = "auto", an incremental pass uses the index only from this much exact
# work (changed rows × N × d; ~1-2 core-seconds of products).
INCREMENTAL_WORK = 1e11


@dataclass
class SuggestInputs:
    unit: np.ndarray  # the standing face of each file, unit length
    rows: np.ndarray  # which face row stands for each file
    calibration: Calibration
    folder_of_class: dict[str, int]


@dataclass
class Plan:
    """What one refresh writes, computed with no connection open."""

    unusable: list[int]
    calibration: Calibration | None  # to save (None: unchanged)
    compare_params: str | None  # to save (None: unchanged)
    lists: compare.Lists | None  # in row indices of snapshot.faces
    cleared: np.ndarray  # file ids whose dirty flag goes
    chosen_ids: np.ndarray  # files whose standing face changed
    chosen_faces: np.ndarray
    folder_names: dict[int, str]
    folder_file_ids: np.ndarray
    folder_file_folders: np.ndarray
    suggest: SuggestInputs | None  # None: the review queue needs no update
    suggestions_key: str
    # Figures for the run's stats.
    full_compare: bool = False
    compared: int = 0
    calibration_summary: dict[str, Any] = dataclasses.field(default_factory=dict)


def compute(
    snap: Snapshot, settings: Settings, xp: Any, index: Keeper | None = None
) -> Plan | None:
    """Everything the snapshot's store needs written, or None when it is up to date.
    Pure but for `index`: no connection, no clock, no callbacks (`xp` is the array
    module: NumPy or CuPy; `index`, the pipeline's folder index, is brought in line with
    the faces when it is searched)."""
    k = settings.max_pairs_per_image
    faces = snap.faces
    n = len(faces)
    names, folder_file_ids, folder_file_folders, folder_of_class = assign_folders(snap)
    params = f"threshold={settings.threshold};k={k};model={snap.serving}"
    if snap.unit_faces is not None:
        unit_faces = snap.unit_faces
    else:
        unit_faces = compare.normalise(faces.vectors) if n else np.empty((0, 0), np.float32)
    codes = face_codes(snap)
    old = snap.calibration
    cal, rescore = calibrate(snap.serving, old, unit_faces, faces, codes)
    rows = _standing_faces(snap, unit_faces, codes, cal)
    # One face per file (the common case) needs no second copy of the vectors.
    one_each = len(rows) == len(unit_faces) and bool(np.all(rows == np.arange(len(rows))))
    unit = unit_faces[rows] if n and not one_each else unit_faces
    changed_face = (faces.face_index[rows] != faces.chosen) if n else np.zeros(0, bool)
    dirty = faces.dirty | changed_face
    if snap.compare_params != params:
        rescore = True
    summary = _calibration_summary(cal, settings.threshold) if cal is not None else {}
    lists = None
    cleared = np.empty(0, np.int64)
    full = False
    compared = 0
    if n and (rescore or dirty.any()):
        raw_threshold = cal.cosine_for(settings.threshold)
        full = bool(rescore or dirty.sum() >= n // 2)
        search = candidate_search(
            settings,
            index,
            xp,
            unit,
            rows,
            snap,
            raw_threshold,
            None if full else int(dirty.sum()),
            np.flatnonzero(dirty),
        )
        if full:
            lists = compare.full_lists(xp, unit, codes, raw_threshold, k, search)
            cleared = faces.ids
            compared = n
        else:
            lists, recomputed = compare.incremental_lists(
                xp,
                unit,
                codes,
                raw_threshold,
                k,
                np.flatnonzero(dirty),
                faces.candidates,
                snap.stored_lists_in(faces.ids),
                search,
            )
            cleared = faces.ids[recomputed]
            compared = len(recomputed)
    something_changed = (
        lists is not None
        or bool(snap.unusable)
        or len(folder_file_ids) > 0
        or snap.suggested_at != snap.generation_key()
    )
    if not something_changed and cal == old and not changed_face.any():
        return None
    return Plan(
        unusable=snap.unusable,
        calibration=cal if cal != old else None,
        compare_params=params if snap.compare_params != params else None,
        lists=lists,
        cleared=cleared,
        chosen_ids=faces.ids[changed_face] if n else np.empty(0, np.int64),
        chosen_faces=faces.face_index[rows][changed_face] if n else np.empty(0, np.int16),
        folder_names=names,
        folder_file_ids=folder_file_ids,
        folder_file_folders=folder_file_folders,
        suggest=SuggestInputs(unit, rows, cal, folder_of_class)
        if something_changed and cal is not None
        else None,
        suggestions_key=snap.generation_key(),
        full_compare=full,
        compared=compared,
        calibration_summary=summary,
    )


def candidate_search(
    settings: Settings,
    index: Keeper | None,
    xp: Any,
    unit: np.ndarray,
    rows: np.ndarray,
    snap: Snapshot,
    threshold: float,
    dirty: int | None,
    changed: np.ndarray | None = None,
) -> compare.Search | None:
    """The folder index as the candidate search where the setting and the size call for
    it (None: the exact product). `dirty`: rows changed in an incremental pass (None: a
    full one); `changed`: the dirty rows (what the index need read, where it can trust
    them)."""
    n, d = unit.shape
    if not use_index(settings.candidates, n, d):
        return None
    if settings.candidates == "auto" and dirty is not None and dirty * n * d < INCREMENTAL_WORK:
        # A few changed rows against everyone is cheaper exact than keeping the index in
        # step (its check reads every file); the next full pass brings it up to date.
        return None
    faces = snap.faces
    index = index or Keeper(settings.db, snap.serving)
    keys = StandingKeys(faces.hashes, faces.face_index[rows])
    return index.search(
        xp, unit, faces.ids, faces.classes, keys, threshold, snap.serving, changed, snap.generation
    )


def calibrate(
    model: str,
    old: Calibration | None,
    unit_faces: np.ndarray,
    faces: Any,
    codes: np.ndarray,
) -> tuple[Calibration | None, bool]:
    """The calibration to score with, and whether every pair must be rescored."""
    n = len(faces)
    if n == 0:
        return old, False
    if old is not None and not changed_past(n, old.images):
        return old, False
    # Calibrate on each image's first face: the standing face is chosen with the
    # calibration, and the first face is the standing one for nearly every image.
    first = unit_faces[faces.face_start]
    new = calib.estimate(
        first, codes, raw_is_score=registry.model_is_calibrated(model), keys=faces.hashes
    )
    if old is not None and new.max_shift(old) <= RESCORE_TOLERANCE:
        # Within tolerance: keep the scores stable, remember the size it was checked at.
        return dataclasses.replace(old, images=n), False
    if old is not None:
        log.info("calibration moved by up to %.3f: rescoring every pair", new.max_shift(old))
    return new, True


def suggest(snap: Snapshot, plan: Plan, threshold: float, models: Any = None) -> Suggestions:
    """The review queue from the snapshot and the lists just computed (pure)."""
    assert plan.suggest is not None
    inputs = plan.suggest
    src, dst = _list_rows(snap, snap.faces.ids, plan.lists)
    found = find_suggestions(
        snap,
        inputs.unit,
        inputs.rows,
        src,
        dst,
        inputs.calibration,
        threshold,
        inputs.folder_of_class,
        snap.serving,
        models,
    )
    if found.models is not None:
        # Kept for the next run without the vectors: a reuse binds its own.
        found.models.release()
    centroids.forget()
    # The queue's Arrow arrays are gone; their pool keeps the pages unless told.
    pa.default_memory_pool().release_unused()
    return found


def write_plan(con: Any, snap: Snapshot, plan: Plan, k: int) -> int | None:
    """Write the plan inside the caller's transaction; returns the pairs it removed, or
    None (nothing written) when the store changed since the snapshot."""
    if meta.get_counter(con, "generation") != snap.generation:
        return None
    now = utcnow()
    ids = snap.faces.ids
    removed = matches.forget_matches(con, plan.unusable, k, delete_files=False)
    cal = plan.calibration or snap.calibration
    if plan.calibration is not None:
        matches.save_calibration(con, snap.serving, plan.calibration, now)
    if plan.compare_params is not None:
        meta.set_meta(con, compare_params=plan.compare_params, max_pairs_per_image=k)
    if snap.serving != snap.stored_model:
        # A switch is complete: the new model's pairs and suggestions replace the old
        # ones in this same transaction.
        meta.set_meta(con, model=snap.serving)
        log.info("now serving %s (was %s)", snap.serving, snap.stored_model)
    if plan.lists is not None and cal is not None:
        lists = plan.lists
        matches.write_lists(
            con,
            ids[lists.sources],
            ids[lists.src],
            ids[lists.dst],
            lists.cos,
            lists.candidates,
            plan.cleared,
            cal,
            now,
        )
    if len(plan.chosen_ids):
        catalog.set_standing_faces(con, plan.chosen_ids, plan.chosen_faces)
    folders.write_folders(con, plan.folder_names, plan.folder_file_ids, plan.folder_file_folders)
    return removed


def write_suggestions(con: Any, snap: Snapshot, plan: Plan, found: Suggestions) -> bool:
    """The queue, inside the caller's transaction, unless the store changed meanwhile."""
    if meta.get_counter(con, "generation") != snap.generation:
        return False
    suggestions.write_suggestions(con, found.rows, found.pairs, found.reopen, utcnow())
    meta.set_meta(con, suggested_at=plan.suggestions_key)
    return True


def _standing_faces(
    snap: Snapshot, unit_faces: np.ndarray, codes: np.ndarray, cal: Calibration | None
) -> np.ndarray:
    faces = snap.faces
    if len(faces) == 0:
        return np.empty(0, np.int64)
    picks = {}
    # Reviewers pick few faces: look only when there are picks at all.
    for i, (h, c) in enumerate(zip(faces.hashes, faces.classes, strict=True) if snap.picks else ()):
        face = snap.picks.get((h, c))
        if face is not None:
            hit = np.flatnonzero(
                faces.face_index[faces.face_start[i] : faces.face_start[i] + faces.face_count[i]]
                == face
            )
            if len(hit):
                picks[i] = int(faces.face_start[i] + hit[0])
    same_cos = cal.cosine_for(ANCHOR_SCORE) if cal is not None else 1.0
    return choose_faces(
        codes,
        faces.hashes,
        faces.face_start,
        faces.face_count,
        faces.boxes,
        unit_faces,
        faces.width,
        faces.height,
        same_cos,
        picks,
    )


def _list_rows(
    snap: Snapshot, ids: np.ndarray, lists: compare.Lists | None
) -> tuple[np.ndarray, np.ndarray]:
    """Every image's current list, as row indices (stored lists, replaced where new)."""
    s_src, s_dst, _ = snap.lists
    pos_s, ok_s = positions(ids, s_src)
    pos_d, ok_d = positions(ids, s_dst)
    ok = ok_s & ok_d
    src, dst = pos_s[ok], pos_d[ok]
    if lists is None:
        return src, dst
    keep = ~np.isin(src, lists.sources)
    return np.concatenate([src[keep], lists.src]), np.concatenate([dst[keep], lists.dst])


def _calibration_summary(cal: Calibration, threshold: float) -> dict[str, Any]:
    return {
        "kind": cal.kind,
        "zero_cos": round(cal.zero_cos, 4),
        "anchor_cos": round(cal.anchor_cos, 4),
        "images": cal.images,
        "false_per_image": cal.false_per_image(threshold),
        "recall": cal.recall,
    }
