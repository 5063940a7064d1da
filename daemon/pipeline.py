"""The pipeline: disk → change detection → encoding → comparison → suggestions → store.

`facelint scan` runs it once over the whole tree; the daemon runs it over the paths its
events named. Every step reads, computes and writes apart: a short connection reads
what a step needs, the computation holds no connection, and one short transaction
writes the result. So the dashboard and a user's SQL never wait on a computation, and
what a step leaves undone (files without an encoding, files marked dirty) is exactly
what the next run picks up: a crash or kill loses nothing.

The comparison step (`refresh`) reads a snapshot of the store, computes faces, the
calibration, match lists and suggestions from it, and writes them only if the store
has not changed underneath (its `generation` counter): otherwise it starts over.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from daemon import calibration as calib
from daemon import compare, inventory
from daemon.backend import get_backend
from daemon.config import Settings
from daemon.encoders import registry
from daemon.encoders.base import Encoding
from daemon.encoders.pool import EncoderPool
from daemon.faces import choose_faces
from daemon.mistakes import Mistakes, find_mistakes
from daemon.snapshot import Snapshot, assign_folders, positions
from store import catalog, embeddings, folders, matches, meta, runs, suggestions
from store.connection import StoreGuard, open_store
from store.scores import ANCHOR_SCORE, Calibration

log = logging.getLogger("facelint.pipeline")

FAILED = ("unreadable", "error")
# Rescore every pair when the calibration moved any score by more than this.
RESCORE_TOLERANCE = 0.01
# Re-estimate the calibration when the number of faces changed by this fraction.
RECALIBRATE_GROWTH = 0.01
ENCODE_CHUNK = 64
ENCODE_CHUNK_SECONDS = 20.0
# A refresh whose snapshot went stale (another writer) is computed again, this often.
REFRESH_ATTEMPTS = 3


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class ProgressEvent:
    """What the pipeline is doing, for whoever renders it (a terminal bar, the daemon's
    status file): `stage` with `done` of `total` items."""

    stage: str  # encoding | comparing | suggesting
    done: int
    total: int


@dataclass
class RunStats:
    kind: str = "scan"
    images: int = 0
    scanned: int = 0
    new: int = 0
    moved: int = 0
    changed: int = 0
    touched: int = 0
    removed: int = 0
    encoded: int = 0
    reused: int = 0
    failed: int = 0
    no_face: int = 0
    pairs: int = 0
    pairs_removed: int = 0
    suggestions: int = 0
    encoded_total: int = 0  # every encode the store has recorded, across runs
    full_compare: bool = False
    compared: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    encode_seconds: float = 0.0
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    suggest_seconds: float = 0.0
    # From the run's start until its pairs were committed (queryable), and its encodes.
    queryable_seconds: float = 0.0
    write_seconds: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        out["failures"] = [{"path": p, "status": s, "message": m} for p, s, m in self.failures]
        return out


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


class Pipeline:
    """One store, one root, one encoder pool; run() as often as needed."""

    def __init__(
        self,
        settings: Settings,
        pool: EncoderPool | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        on_wait: Callable[[float, str], None] | None = None,
        before_encode: Callable[[], bool] | None = None,
        guard: StoreGuard | None = None,
    ):
        self.s = settings
        self.root = Path(settings.root)
        self.pool = pool or EncoderPool(settings)
        self._own_pool = pool is None
        self.model = self.pool.model_id
        self.on_progress = on_progress or (lambda event: None)
        self.on_state = on_state or (lambda state: None)
        self.state = "idle"
        self.on_wait = on_wait
        self.before_encode = before_encode
        self.guard = guard  # the daemon's: refuses to write to a store deleted or replaced
        self._xp: Any = None
        self.backend_note = ""
        # The longest a write transaction of this pipeline held the store (benchmarks).
        self.longest_write = 0.0
        self._run_started = time.monotonic()
        # Per model: what the data says of one person and of different people, kept
        # between runs while the data set changes little (a daemon's event batches).
        self._suggest_models: dict[str, Any] = {}

    def close(self) -> None:
        if self._own_pool:
            self.pool.close()

    @contextmanager
    def _store(self, read_only: bool = False) -> Iterator[Any]:
        waited = False

        def waiting(seconds: float, why: str) -> None:
            nonlocal waited
            if not waited:
                log.info("store is locked by another process; waiting: %s", why)
            waited = True
            self.on_state("waiting for store")
            if self.on_wait is not None:
                self.on_wait(seconds, why)

        with open_store(
            self.s.db,
            read_only=read_only,
            timeout=self.s.lock_timeout,
            on_wait=waiting,
            guard=self.guard,
        ) as con:
            if waited:
                self.on_state(self.state)
            yield con

    @contextmanager
    def _write(self) -> Iterator[Any]:
        """One write transaction, timed: how long readers may wait on us."""
        with self._store() as con:
            started = time.monotonic()
            yield con
            # Commit happens as the outer block exits: count it too.
        self.longest_write = max(self.longest_write, time.monotonic() - started)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.on_state(state)

    @property
    def xp(self) -> Any:
        if self._xp is None:
            self._xp, self.backend_note = get_backend(self.s.backend)
            log.info("comparison backend: %s", self.backend_note)
        return self._xp

    # -- the run ---------------------------------------------------------------------------

    def run(
        self,
        paths: Iterable[str] | None = None,
        folders: Iterable[str] = (),
        kind: str = "scan",
    ) -> RunStats:
        """Bring the store in line with the disk: the whole tree (paths=None), or only the
        given root-relative file paths and folders (the daemon's events)."""
        started = time.monotonic()
        self._run_started = started
        started_at = utcnow()
        stats = RunStats(kind=kind)
        self._set_state("scanning")
        diff = self._detect(paths, list(folders), stats)
        todo = self._apply(diff, stats)
        self._encode(stats, todo)
        self.refresh(stats)
        stats.seconds = round(time.monotonic() - started, 3)
        self._finish(stats, started_at)
        return stats

    def _detect(self, paths: Iterable[str] | None, folders: list[str], stats: RunStats):
        skipped = stats.skipped
        if paths is None:
            self.root.mkdir(parents=True, exist_ok=True)
            disk = list(inventory.walk(self.root, self.s.extensions, self.s.quarantine, skipped))
            with self._store() as con:
                stored = catalog.load_files(con)
            if not disk and stored and not self.s.allow_empty:
                raise inventory.EmptyRoot(self.root, len(stored))
        else:
            # The scan's own rule (inventory.check_path) for every path an event named.
            wanted: set[str] = set()
            disk_by_path: dict[str, inventory.DiskFile] = {}
            for p in paths:
                f, why = inventory.check_path(self.root, p, self.s.extensions, self.s.quarantine)
                if why is not None:
                    skipped.append((inventory.printable(p), why))
                if inventory.is_tracked(p, self.s.extensions, self.s.quarantine):
                    wanted.add(p)  # a stored row for it goes unless the file is tracked
                if f is not None:
                    disk_by_path[p] = f
            for folder in folders:
                if (self.root / folder).is_dir():
                    for f in inventory.walk(
                        self.root, self.s.extensions, self.s.quarantine, skipped, start=folder
                    ):
                        disk_by_path[f.path] = f
            disk = list(disk_by_path.values())
            with self._store() as con:
                stored = catalog.load_files(con, wanted | set(disk_by_path))
                for folder in folders:
                    stored.update(catalog.load_files_under(con, folder))
        stats.scanned = len(disk)
        return inventory.diff(self.root, disk, stored, skipped)

    def _apply(self, diff: inventory.Diff, stats: RunStats) -> list[tuple[str, str]] | None:
        """Write the diff; returns the content still to encode (None: nothing was written,
        so the encode step asks the store itself, for work a crash left pending)."""
        stats.new, stats.moved = len(diff.new), len(diff.moved)
        stats.changed, stats.touched = len(diff.changed), len(diff.touched)
        stats.removed = len(diff.removed)
        if diff.is_empty():
            return None
        now = utcnow()
        with self._write() as con:
            if meta.get_meta(con, "model") is None:
                # A new store serves the configured model from the start; an existing one
                # goes on serving its model until a switch is complete (refresh).
                meta.set_meta(con, model=self.model)
            meta.set_meta(con, max_pairs_per_image=self.s.max_pairs_per_image)
            stored_classes = catalog.classes_of(con, [i for i, _ in diff.moved])
            stats.pairs_removed += matches.forget_matches(
                con, diff.removed, self.s.max_pairs_per_image, delete_files=True
            )
            updates = [
                (i, f.path, f.klass, f.size, f.mtime_ns, None, stored_classes.get(i) != f.klass)
                for i, f in diff.moved
            ]
            updates += [
                (i, f.path, f.klass, f.size, f.mtime_ns, h, True) for i, f, h in diff.changed
            ]
            updates += [
                (i, f.path, f.klass, f.size, f.mtime_ns, None, False) for i, f in diff.touched
            ]
            catalog.update_files(con, updates, now)
            catalog.add_files(
                con, [(f.path, f.klass, f.size, f.mtime_ns, h) for f, h in diff.new], now
            )
            meta.bump_counter(con, "generation", 1)
            todo = embeddings.hashes_to_encode(con, self.model)
        missing = {h for h, _ in todo}
        # Content already encoded under this model is reused, never re-encoded.
        stats.reused = stats.moved + sum(1 for _, h in diff.new if h not in missing)
        stats.reused += sum(1 for _, _, h in diff.changed if h not in missing)
        return todo

    def _encode(self, stats: RunStats, todo: list[tuple[str, str]] | None) -> None:
        if todo is None:
            with self._store() as con:
                todo = embeddings.hashes_to_encode(con, self.model)
        if not todo:
            return
        self._set_state("encoding")
        started = time.monotonic()
        total = len(todo)
        self.on_progress(ProgressEvent("encoding", 0, total))
        paths = dict(todo)
        batch: list[embeddings.EncodingRow] = []
        last_flush = time.monotonic()
        done = 0
        for digest, enc in self.pool.encode(
            ((h, self.root / p) for h, p in todo), before_each=self.before_encode
        ):
            done += 1
            self.on_progress(ProgressEvent("encoding", done, total))
            if enc.status == "missing":
                stats.skipped.append((paths[digest], enc.message))
                continue
            batch.append(_row(digest, enc))
            if enc.status in FAILED:
                stats.failed += 1
                stats.failures.append((paths[digest], enc.status, enc.message))
            elif enc.status == "no_face":
                stats.no_face += 1
                stats.failures.append((paths[digest], enc.status, enc.message))
            if len(batch) >= ENCODE_CHUNK or time.monotonic() - last_flush > ENCODE_CHUNK_SECONDS:
                stats.encoded += self._flush(batch)
                last_flush = time.monotonic()
        stats.encoded += self._flush(batch)
        stats.encode_seconds = round(time.monotonic() - started, 3)

    def _flush(self, batch: list[embeddings.EncodingRow]) -> int:
        if not batch:
            return 0
        with self._write() as con:
            embeddings.write_encodings(con, self.model, batch, utcnow())
            meta.bump_counter(con, "generation", 1)
        n = len(batch)
        batch.clear()
        return n

    # -- refresh: read → compute → write ---------------------------------------------------

    def refresh(self, stats: RunStats | None = None) -> None:
        """Bring faces, calibration, pairs and suggestions up to date with the files and
        encodings in the store."""
        stats = stats or RunStats(kind="refresh")
        for _ in range(REFRESH_ATTEMPTS):
            t0 = time.monotonic()
            with self._store() as con:
                snap = Snapshot.read(con, self.model)
            if snap.switching:
                log.info(
                    "switching models: %s serves while %s encodes (%d contents left)",
                    snap.serving,
                    self.model,
                    snap.switch_left,
                )
            t1 = time.monotonic()
            plan = self._compute(snap, stats)
            t2 = time.monotonic()
            stats.read_seconds += round(t1 - t0, 3)
            stats.compute_seconds += round(t2 - t1, 3)
            if plan is None:
                return
            if self._write_plan(snap, plan, stats):
                stats.write_seconds += round(time.monotonic() - t2, 3)
                stats.queryable_seconds = round(time.monotonic() - self._run_started, 3)
                if plan.suggest is not None:
                    # Pairs are queryable now; the queue follows in its own short write,
                    # so a new face never waits for the suggestions to be recomputed.
                    mistakes = self._suggest(snap, plan, stats)
                    t3 = time.monotonic()
                    if not self._write_suggestions(snap, plan, mistakes):
                        log.info("the store changed while suggesting: the next run redoes it")
                    stats.write_seconds += round(time.monotonic() - t3, 3)
                self._set_state("idle")
                return
            log.info("the store changed while comparing: computing again")
        log.warning("the store kept changing; the next run finishes the comparison")

    def _compute(self, snap: Snapshot, stats: RunStats) -> Plan | None:
        k = self.s.max_pairs_per_image
        faces = snap.faces
        n = len(faces)
        names, folder_file_ids, folder_file_folders, folder_of_class = assign_folders(snap)
        params = f"threshold={self.s.threshold};k={k};model={snap.serving}"
        unit_faces = compare.normalise(faces.vectors) if n else np.empty((0, 0), np.float32)
        codes = (
            np.unique(np.asarray(faces.classes), return_inverse=True)[1]
            if n
            else np.empty(0, np.int64)
        )
        old = snap.calibration
        cal, rescore = self._calibrate(snap.serving, old, unit_faces, faces, codes)
        rows = _standing_faces(snap, unit_faces, codes, cal)
        unit = unit_faces[rows] if n else unit_faces
        changed_face = (faces.face_index[rows] != faces.chosen) if n else np.zeros(0, bool)
        dirty = faces.dirty | changed_face
        if snap.compare_params != params:
            rescore = True
        if cal is not None:
            stats.calibration = _calibration_summary(cal, self.s.threshold)
        lists = None
        cleared = np.empty(0, np.int64)
        if n and (rescore or dirty.any()):
            self._set_state("comparing")
            self.on_progress(ProgressEvent("comparing", 0, 1))
            raw_threshold = cal.cosine_for(self.s.threshold)
            if rescore or dirty.sum() >= n // 2:
                stats.full_compare = True
                lists = compare.full_lists(self.xp, unit, codes, raw_threshold, k)
                cleared = faces.ids
                stats.compared = n
            else:
                lists, recomputed = compare.incremental_lists(
                    self.xp,
                    unit,
                    codes,
                    raw_threshold,
                    k,
                    np.flatnonzero(dirty),
                    faces.candidates,
                    snap.stored_lists_in(faces.ids),
                )
                cleared = faces.ids[recomputed]
                stats.compared = len(recomputed)
            self.on_progress(ProgressEvent("comparing", 1, 1))
        something_changed = (
            lists is not None
            or bool(snap.unusable)
            or len(folder_file_ids) > 0
            or snap.suggested_at != snap.generation_key()
        )
        if (
            lists is None
            and not snap.unusable
            and not something_changed
            and cal == old
            and not changed_face.any()
        ):
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
        )

    def _suggest(self, snap: Snapshot, plan: Plan, stats: RunStats) -> Mistakes:
        """The review queue from the faces and lists just written (no connection open)."""
        assert plan.suggest is not None
        inputs = plan.suggest
        self._set_state("suggesting")
        self.on_progress(ProgressEvent("suggesting", 0, 1))
        started = time.monotonic()
        src, dst = _list_rows(snap, snap.faces.ids, plan.lists)
        mistakes = find_mistakes(
            snap,
            inputs.unit,
            inputs.rows,
            src,
            dst,
            inputs.calibration,
            self.s.threshold,
            inputs.folder_of_class,
            snap.serving,
            self._suggest_models.get(snap.serving),
        )
        if mistakes.models is not None:
            self._suggest_models[snap.serving] = mistakes.models
        stats.suggestions = len(mistakes.rows)
        stats.suggest_seconds += round(time.monotonic() - started, 3)
        self.on_progress(ProgressEvent("suggesting", 1, 1))
        return mistakes

    def _calibrate(
        self,
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
        if old is not None and abs(n - old.images) <= max(1, RECALIBRATE_GROWTH * old.images):
            return old, False
        # Calibrate on each image's first face: the standing face is chosen with the
        # calibration, and the first face is the standing one for nearly every image.
        first = unit_faces[faces.face_start]
        new = calib.estimate(first, codes, raw_is_score=registry.model_is_calibrated(model))
        if old is not None and new.max_shift(old) <= RESCORE_TOLERANCE:
            # Within tolerance: keep the scores stable, remember the size it was checked at.
            kept = dataclasses.replace(old, images=n)
            return kept, False
        if old is not None:
            log.info("calibration moved by up to %.3f: rescoring every pair", new.max_shift(old))
        return new, True

    def _write_plan(self, snap: Snapshot, plan: Plan, stats: RunStats) -> bool:
        now = utcnow()
        k = self.s.max_pairs_per_image
        ids = snap.faces.ids
        with self._write() as con:
            if meta.get_counter(con, "generation") != snap.generation:
                return False
            self._set_state("writing")
            stats.pairs_removed += matches.forget_matches(con, plan.unusable, k, delete_files=False)
            cal = plan.calibration or snap.calibration
            if plan.calibration is not None:
                matches.save_calibration(con, snap.serving, plan.calibration, now)
            if plan.compare_params is not None:
                meta.set_meta(con, compare_params=plan.compare_params, max_pairs_per_image=k)
            if snap.serving != snap.stored_model:
                # A switch is complete: the new model's pairs and suggestions replace the
                # old ones in this same transaction.
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
            folders.write_folders(
                con, plan.folder_names, plan.folder_file_ids, plan.folder_file_folders
            )
        return True

    def _write_suggestions(self, snap: Snapshot, plan: Plan, mistakes: Mistakes) -> bool:
        with self._write() as con:
            if meta.get_counter(con, "generation") != snap.generation:
                return False
            suggestions.write_suggestions(
                con, mistakes.rows, mistakes.pairs, mistakes.reopen, utcnow()
            )
            meta.set_meta(con, suggested_at=plan.suggestions_key)
        return True

    def _finish(self, stats: RunStats, started_at: datetime) -> None:
        with self._write() as con:
            stats.pairs = matches.count_pairs(con)
            stats.images = catalog.count_files(con)
            stats.encoded_total = meta.get_counter(con, "encoded_total")
            figures = {
                k: getattr(stats, k)
                for k in (
                    "images",
                    "encoded",
                    "reused",
                    "removed",
                    "failed",
                    "pairs",
                    "full_compare",
                )
            }
            runs.record_run(con, started_at, utcnow(), stats.kind, str(self.root), figures)
        self._set_state("idle")


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


def _row(digest: str, enc: Encoding) -> embeddings.EncodingRow:
    return embeddings.EncodingRow(
        digest,
        enc.status,
        enc.message,
        enc.detected,
        enc.whole_image,
        enc.width,
        enc.height,
        [embeddings.FaceRow(f.box, f.vector, f.det_score) for f in enc.faces],
    )
