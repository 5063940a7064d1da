"""The pipeline: disk → change detection → encoding → comparison → store.

`facelint scan` runs it once over the whole tree; the daemon runs it over the paths its
events named. Each step writes in its own short transaction, and what a step leaves
undone (files without an embedding, files marked dirty) is exactly what the next run
picks up, so a crash or kill loses nothing.
"""

from __future__ import annotations

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
from daemon.encode_pool import EncoderPool
from daemon.encoder import Encoding
from daemon.progress import Progress
from store import catalog, matches
from store.connection import StoreGuard, open_store
from store.scores import Calibration

log = logging.getLogger("facelint.pipeline")

FAILED = ("unreadable", "error")
# Rescore every pair when the calibration moved any score by more than this.
RESCORE_TOLERANCE = 0.01
# Re-estimate the calibration when the number of faces changed by this fraction.
RECALIBRATE_GROWTH = 0.01
ENCODE_CHUNK = 64
ENCODE_CHUNK_SECONDS = 20.0


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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
    encoded_total: int = 0  # every encode the store has recorded, across runs
    full_compare: bool = False
    compared: int = 0
    calibration: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    encode_seconds: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        out["failures"] = [{"path": p, "status": s, "message": m} for p, s, m in self.failures]
        return out


class Pipeline:
    """One store, one root, one encoder pool; run() as often as needed."""

    def __init__(
        self,
        settings: Settings,
        pool: EncoderPool | None = None,
        progress: Progress | None = None,
        on_state: Callable[[str], None] | None = None,
        on_wait: Callable[[float, str], None] | None = None,
        before_encode: Callable[[], bool] | None = None,
        guard: StoreGuard | None = None,
    ):
        self.s = settings
        self.root = Path(settings.root)
        self.pool = pool or EncoderPool(
            settings.num_jitters,
            settings.detector,
            settings.detect_max_side,
            settings.onnx_model,
            settings.max_pixels,
            settings.workers,
        )
        self._own_pool = pool is None
        self.model = self.pool.model_id
        self.progress = progress or Progress(enabled=False)
        self.on_state = on_state or (lambda state: None)
        self.state = "idle"
        self.on_wait = on_wait
        self.before_encode = before_encode
        self.guard = guard  # the daemon's: refuses to write to a store deleted or replaced
        self._xp: Any = None
        self.backend_note = ""

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
        started_at = utcnow()
        stats = RunStats(kind=kind)
        self._set_state("scanning")
        diff = self._detect(paths, list(folders), stats)
        todo = self._apply(diff, stats)
        self._encode(stats, todo)
        self._compare(stats)
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
        with self._store() as con:
            catalog.set_meta(con, model=self.model, max_pairs_per_image=self.s.max_pairs_per_image)
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
            todo = catalog.hashes_to_encode(con, self.model)
        missing = {h for h, _ in todo}
        # Content already encoded under this model is reused, never re-encoded.
        stats.reused = stats.moved + sum(1 for _, h in diff.new if h not in missing)
        stats.reused += sum(1 for _, _, h in diff.changed if h not in missing)
        return todo

    def _encode(self, stats: RunStats, todo: list[tuple[str, str]] | None) -> None:
        if todo is None:
            with self._store() as con:
                todo = catalog.hashes_to_encode(con, self.model)
        if not todo:
            return
        self._set_state("encoding")
        started = time.monotonic()
        self.progress.start("encoding", len(todo))
        paths = dict(todo)
        batch: list[catalog.EmbeddingRow] = []
        last_flush = time.monotonic()
        for digest, enc in self.pool.encode(
            ((h, self.root / p) for h, p in todo), before_each=self.before_encode
        ):
            self.progress.advance()
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
        self.progress.finish()
        stats.encode_seconds = round(time.monotonic() - started, 3)

    def _flush(self, batch: list[catalog.EmbeddingRow]) -> int:
        if not batch:
            return 0
        with self._store() as con:
            catalog.write_embeddings(con, self.model, batch, utcnow())
        n = len(batch)
        batch.clear()
        return n

    def _calibrate(self, con, unit: np.ndarray, codes: np.ndarray) -> tuple[Calibration, bool]:
        """The calibration to score with, and whether every pair must be rescored."""
        old = matches.load_calibration(con, self.model)
        n = len(unit)
        if self.s.onnx_model:
            new = calib.identity()
        elif old is None or abs(n - old.images) > max(1, RECALIBRATE_GROWTH * old.images):
            new = calib.estimate(unit, codes)
        else:
            return old, False
        if old is not None and new.max_shift(old) <= RESCORE_TOLERANCE:
            # Within tolerance: keep the scores stable, remember the size it was checked at.
            kept = Calibration(
                old.kind,
                old.zero_cos,
                old.anchor_cos,
                old.anchor_score,
                old.false_rate,
                old.samples,
                n,
            )
            matches.save_calibration(con, self.model, kept, utcnow())
            return kept, False
        matches.save_calibration(con, self.model, new, utcnow())
        if old is not None:
            log.info("calibration moved by up to %.3f: rescoring every pair", new.max_shift(old))
        return new, True

    def _compare(self, stats: RunStats) -> None:
        k = self.s.max_pairs_per_image
        now = utcnow()
        with self._store() as con:
            unusable = catalog.dirty_unusable(con, self.model)
            stats.pairs_removed += matches.forget_matches(con, unusable, k, delete_files=False)
            vec = catalog.load_vectors(con, self.model)
            n = len(vec.ids)
            if n == 0:
                return
            unit = compare.normalise(vec.vectors)
            codes = np.unique(np.asarray(vec.classes), return_inverse=True)[1]
            cal, rescore = self._calibrate(con, unit, codes)
            # Another threshold or cap changes which pairs exist: recompute them all.
            params = f"threshold={self.s.threshold};k={k}"
            if catalog.get_meta(con, "compare_params") != params:
                rescore = True
                catalog.set_meta(con, compare_params=params, max_pairs_per_image=k)
            stats.calibration = {
                "kind": cal.kind,
                "zero_cos": round(cal.zero_cos, 4),
                "anchor_cos": round(cal.anchor_cos, 4),
                "images": cal.images,
            }
            dirty = np.flatnonzero(vec.dirty)
            if not rescore and len(dirty) == 0:
                return
            self._set_state("comparing")
            raw_threshold = cal.cosine_for(self.s.threshold)
            ids = vec.ids

            def stored_lists(holding: np.ndarray, sources: np.ndarray) -> compare.Triples:
                o_src, o_dst, o_cos = matches.lists_of(con, ids[holding], ids[sources])
                s_pos, s_ok = _positions(ids, o_src)
                d_pos, d_ok = _positions(ids, o_dst)
                ok = s_ok & d_ok
                return s_pos[ok], d_pos[ok], o_cos[ok]

            if rescore or len(dirty) >= n // 2:
                stats.full_compare = True
                lists = compare.full_lists(self.xp, unit, codes, raw_threshold, k)
                cleared = ids
            else:
                lists, dirty = compare.incremental_lists(
                    self.xp, unit, codes, raw_threshold, k, dirty, vec.candidates, stored_lists
                )
                cleared = ids[dirty]
            stats.compared = len(dirty) if not stats.full_compare else n
            matches.write_lists(
                con,
                ids[lists.sources],
                ids[lists.src],
                ids[lists.dst],
                lists.cos,
                lists.candidates,
                cleared,
                cal,
                now,
            )

    def _finish(self, stats: RunStats, started_at: datetime) -> None:
        with self._store() as con:
            stats.pairs = matches.count_pairs(con)
            stats.images = catalog.count_files(con)
            stats.encoded_total = catalog.get_counter(con, "encoded_total")
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
            catalog.record_run(con, started_at, utcnow(), stats.kind, str(self.root), figures)
        self._set_state("idle")


def _positions(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index of each wanted id in the sorted `ids`, and whether it is there at all."""
    if len(ids) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    pos = np.clip(np.searchsorted(ids, wanted), 0, len(ids) - 1)
    return pos, ids[pos] == wanted


def _row(digest: str, enc: Encoding) -> catalog.EmbeddingRow:
    return catalog.EmbeddingRow(
        digest,
        enc.status,
        enc.message,
        enc.faces,
        enc.box,
        enc.whole_image,
        enc.width,
        enc.height,
        enc.vector,
    )
