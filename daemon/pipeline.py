"""The pipeline: disk → change detection → encoding → comparison → suggestions → store.

`facelint scan` runs it once over the whole tree; the daemon runs it over the paths its
events named. It only wires the steps, each of which a test can call alone:
`daemon/scan.py` (detect, apply), `daemon/encode.py`, `daemon/refresh.py` (snapshot →
compute → plan → write). Every step reads, computes and writes apart: reads open the
store read-only (never the writer's lock), the computation holds no connection, and one
short transaction writes the result. What a step leaves undone (files without an
encoding, files marked dirty) is exactly what the next run picks up: a crash or kill
loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from daemon import refresh as refresh_step
from daemon import scan
from daemon.backend import get_backend
from daemon.config import Settings
from daemon.encode import Pool, encode, make_pool
from daemon.encoders.ray_pool import cluster_address
from daemon.index.keeper import Keeper
from daemon.runstats import ProgressEvent, RunStats
from daemon.snapshot import FaceCache, Snapshot
from store import catalog, matches, meta, runs
from store.clock import utcnow
from store.connection import StoreGuard
from store.db import Store

log = logging.getLogger("facelint.pipeline")

# A refresh whose snapshot went stale (another writer) is computed again, this often.
REFRESH_ATTEMPTS = 3

__all__ = ["Pipeline", "ProgressEvent", "RunStats"]


class Pipeline:
    """One store, one root, one encoder pool (local processes, or a Ray cluster: see
    daemon/encode.py's make_pool); run() as often as needed."""

    def __init__(
        self,
        settings: Settings,
        pool: Pool | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        on_wait: Callable[[float, str], None] | None = None,
        before_encode: Callable[[], bool] | None = None,
        guard: StoreGuard | None = None,
    ):
        self.s = settings
        self.root = Path(settings.root)
        self.pool = pool or make_pool(settings)
        self._own_pool = pool is None
        self.model = self.pool.model_id
        self.on_progress = on_progress or (lambda event: None)
        self.on_state = on_state or (lambda state: None)
        self.state = "idle"
        self.on_wait = on_wait
        self.before_encode = before_encode
        self._waited = False
        # The guard (the daemon's) refuses to use a store deleted or replaced under it.
        self.store = Store(
            settings.db, lock_timeout=settings.lock_timeout, on_wait=self._waiting, guard=guard
        )
        self._xp: Any = None
        self.backend_note = ""
        # The longest a write transaction of this pipeline held the store (benchmarks).
        self.longest_write = 0.0
        self._run_started = time.monotonic()
        # Per model: what the data says of one person and of different people, kept
        # between runs while the data set changes little (a daemon's event batches).
        self._suggest_models: dict[str, Any] = {}
        # The generation the store was last brought fully up to date at, by this pipeline:
        # an event batch that finds it unchanged, and nothing new, writes nothing.
        self._current_at: int | None = None
        self._prepared = False
        # The folder index (candidates = index, or auto at scale), kept between refreshes.
        self.index = Keeper(
            Path(settings.db), self.model, settings.index_shards, cluster_address(settings)
        )
        # The faces' vectors between refreshes: a refresh reads only the new ones.
        self._faces = FaceCache()

    def close(self) -> None:
        self.index.close()
        if self._own_pool:
            self.pool.close()

    def _waiting(self, seconds: float, why: str) -> None:
        if not self._waited:
            log.info("store is locked by another process; waiting: %s", why)
        self._waited = True
        self.on_state("waiting for store")
        if self.on_wait is not None:
            self.on_wait(seconds, why)

    def _timed_write(self, seconds: float) -> None:
        self.longest_write = max(self.longest_write, seconds)

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
        if not self._prepared or (self.store.guard and self.store.guard.identity is None):
            self._prepare()
        if paths is None:
            # A full scan reads every file row again (a row changed by hand included).
            self._faces.forget_files()
        detected = scan.detect(
            self.s,
            self.store,
            self.model,
            stats,
            None if paths is None else list(paths),
            list(folders),
        )
        todo = scan.apply(self.s, self.store, self.model, detected, stats)
        if todo is None:
            # The disk looked changed but the diff came out empty (a file unreadable for
            # now): what detect would have read, in one more read-only open.
            detected = scan.read_pending(self.store, self.model)
            todo = detected.todo
        if (
            paths is not None
            and detected.diff.is_empty()
            and not todo
            and detected.generation == self._current_at
        ):
            # Nothing on disk changed and the store is as this pipeline left it: the one
            # read-only open above was the whole batch.
            stats.wrote = False
            stats.images = detected.totals.images
            stats.pairs = detected.totals.pairs
            stats.encoded_total = detected.totals.encoded_total
            stats.seconds = round(time.monotonic() - started, 3)
            self._set_state("idle")
            return stats
        if todo:
            self._set_state("encoding")
            encode(
                self.root,
                self.store,
                self.pool,
                todo,
                stats,
                self.on_progress,
                self.before_encode,
                self._timed_write,
            )
        self.refresh(stats)
        stats.seconds = round(time.monotonic() - started, 3)
        self._finish(stats, started_at)
        return stats

    def _prepare(self) -> None:
        """Once per pipeline (and again after the daemon's guard let go of a lost store):
        one write open creates the store or brings its schema up to date, and pins the
        guard to the file, so that every later read can open read-only."""
        with self.store.writing():
            pass
        self._prepared = True

    # -- refresh: read → compute → write ---------------------------------------------------

    def refresh(self, stats: RunStats | None = None) -> None:
        """Bring faces, calibration, pairs and suggestions up to date with the files and
        encodings in the store."""
        stats = stats or RunStats(kind="refresh")
        k = self.s.max_pairs_per_image
        for _ in range(REFRESH_ATTEMPTS):
            t0 = time.monotonic()
            with self.store.reading() as con:
                snap = Snapshot.read(con, self.model, self._faces)
            if snap.switching:
                log.info(
                    "switching models: %s serves while %s encodes (%d contents left)",
                    snap.serving,
                    self.model,
                    snap.switch_left,
                )
            t1 = time.monotonic()
            self._set_state("comparing")
            self.on_progress(ProgressEvent("comparing", 0, 1))
            plan = refresh_step.compute(snap, self.s, self.xp, self.index)
            if self.s.candidates != "index":
                self.index.release()
            self.on_progress(ProgressEvent("comparing", 1, 1))
            t2 = time.monotonic()
            stats.read_seconds += round(t1 - t0, 3)
            stats.compute_seconds += round(t2 - t1, 3)
            if plan is None:
                self._current_at = snap.generation
                self._set_state("idle")
                return
            stats.full_compare = stats.full_compare or plan.full_compare
            stats.compared += plan.compared
            if plan.calibration_summary:
                stats.calibration = plan.calibration_summary
            self._set_state("writing")
            with self.store.writing() as con:
                w0 = time.monotonic()
                removed = refresh_step.write_plan(con, snap, plan, k)
            self._timed_write(time.monotonic() - w0)
            if removed is None:
                log.info("the store changed while comparing: computing again")
                continue
            self.index.written(snap.generation)
            stats.pairs_removed += removed
            stats.write_seconds += round(time.monotonic() - t2, 3)
            stats.queryable_seconds = round(time.monotonic() - self._run_started, 3)
            if plan.suggest is not None:
                # Pairs are queryable now; the queue follows in its own short write, so a
                # new face never waits for the suggestions to be recomputed.
                self._set_state("suggesting")
                self.on_progress(ProgressEvent("suggesting", 0, 1))
                s0 = time.monotonic()
                found = refresh_step.suggest(
                    snap, plan, self.s.threshold, self._suggest_models.get(snap.serving)
                )
                if found.models is not None:
                    self._suggest_models[snap.serving] = found.models
                stats.suggestions = len(found.rows)
                stats.suggest_seconds += round(time.monotonic() - s0, 3)
                self.on_progress(ProgressEvent("suggesting", 1, 1))
                t3 = time.monotonic()
                with self.store.writing() as con:
                    w0 = time.monotonic()
                    written = refresh_step.write_suggestions(con, snap, plan, found)
                self._timed_write(time.monotonic() - w0)
                if not written:
                    log.info("the store changed while suggesting: the next run redoes it")
                stats.write_seconds += round(time.monotonic() - t3, 3)
            self._current_at = snap.generation
            self._set_state("idle")
            return
        log.warning("the store kept changing; the next run finishes the comparison")

    def _finish(self, stats: RunStats, started_at: datetime) -> None:
        with self.store.writing() as con:
            w0 = time.monotonic()
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
        self._timed_write(time.monotonic() - w0)
        self._set_state("idle")
