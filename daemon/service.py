"""`facelint daemon`: the pipeline driven by file events, under systemd.

One thread does all the work (reconciles and event batches), so the store has a single
writer here. Watchdog's observer thread only fills the queue; APScheduler only raises a
flag for the periodic reconcile; a heartbeat thread publishes the status file and pings
systemd's watchdog while the worker keeps making progress.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.common.humanize import rate_and_eta
from daemon.common.statusfile import write_status
from daemon.config import Settings
from daemon.inventory import EmptyRoot, printable
from daemon.notify import SystemdNotifier
from daemon.pipeline import Pipeline, ProgressEvent, RunStats
from daemon.progress import TerminalProgress
from daemon.thermal import TemperatureSource, ThermalGovernor, make_temperature_source
from daemon.watcher import Batch, EventQueue, start_observer
from store.connection import StoreBusy, StoreGuard, StoreLost, file_identity

log = logging.getLogger("facelint.daemon")

HEARTBEAT_SECONDS = 2.0
# The worker counts as alive while it reported progress this recently; past it, systemd's
# watchdog is no longer fed and restarts a hung daemon. One encode takes seconds, one
# lock wait reports every few seconds, so only a real hang gets this far.
STALL_SECONDS = 300.0
RETRY_SECONDS = 5.0


class DaemonRunning(RuntimeError):
    """Another daemon already keeps this store."""


def lock_path(settings: Settings) -> Path:
    db = Path(settings.db).absolute()
    return db.with_name(db.name + ".daemon.lock")


@contextmanager
def daemon_lock(settings: Settings) -> Iterator[None]:
    """One daemon per store: an exclusive flock on `<db>.daemon.lock` for the daemon's life.

    The kernel drops the lock when the process ends, however it ends (kill -9 too), so a
    lock file left behind never blocks a restart. The file holds the owner's pid, for
    the message. Encoder workers are spawned (exec), and the descriptor is not
    inheritable, so no child keeps the lock after its parent.
    """
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise DaemonRunning(
                f"another facelint daemon{f' (pid {pid})' if pid else ''} already keeps the "
                f"store {settings.db}: stop it first, or give this one another --db "
                f"(lock held on {path})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


class Service:
    def __init__(
        self,
        settings: Settings,
        temperature: TemperatureSource | None = None,
        notifier: SystemdNotifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.s = settings
        self.root = settings.root
        self.notifier = notifier or SystemdNotifier()
        self.clock = clock
        self.governor = ThermalGovernor(
            temperature or make_temperature_source(settings.temp_sensor),
            settings.temp_limit,
            settings.temp_resume,
            check_seconds=settings.temp_check_seconds,
        )
        self.queue = EventQueue(settings.root, settings.quiet_seconds)
        self.stop_event = threading.Event()
        self.reconcile_due = threading.Event()
        self.terminal = TerminalProgress()
        self.progress: dict[str, Any] | None = None
        self._stage_started = clock()
        self.store_lost = threading.Event()
        self.guard = StoreGuard()
        self.pipeline = Pipeline(
            settings,
            on_progress=self._progress,
            on_state=self._set_state,
            on_wait=self._store_wait,
            before_encode=self._before_encode,
            guard=self.guard,
        )
        self.state = "starting"
        self.message = ""
        # What the user must know even after work goes on (a lost store): kept in the
        # status file, the systemd STATUS and the log until the daemon restarts.
        self.alert = ""
        self.rebuilding = False
        self.totals: dict[str, Any] = {}
        self.last_reconcile: str | None = None
        self.encoded_recent: list[tuple[float, int]] = []
        self._alive = clock()
        self._status_lock = threading.Lock()

    # -- status --------------------------------------------------------------------------

    def _mark_alive(self) -> None:
        self._alive = self.clock()

    def _set_state(self, state: str) -> None:
        self._mark_alive()
        if state != self.state:
            self.state = state
            self.publish()

    def _progress(self, event: ProgressEvent) -> None:
        """The pipeline's progress, on the terminal and in the status file: done/total,
        rate and time left, so the dashboard can say "encoding 1,234 of 5,000"."""
        self._mark_alive()
        self.terminal(event)
        now = self.clock()
        if self.progress is None or self.progress["stage"] != event.stage or event.done == 0:
            self._stage_started = now
        elapsed = now - self._stage_started
        rate, left = rate_and_eta(event.done, event.total, elapsed)
        self.progress = {
            "stage": event.stage,
            "done": event.done,
            "total": event.total,
            "rate": round(rate, 2),
            "eta_s": None if left is None else round(left, 1),
        }
        if event.done >= event.total:
            self.progress = None
            self.publish()

    def _store_wait(self, waited: float, why: str) -> None:
        self._mark_alive()
        self.message = f"store locked by another process for {waited:.0f} s"
        self.publish()

    def throughput(self) -> float:
        """Images encoded per second over the last minute."""
        now = self.clock()
        self.encoded_recent = [(t, n) for t, n in self.encoded_recent if now - t < 60]
        return round(sum(n for _, n in self.encoded_recent) / 60.0, 3)

    def snapshot(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "heartbeat": time.time(),
            "pid": os.getpid(),
            "queue": len(self.queue),
            "throughput": self.throughput(),
            "throttled": self.governor.throttled,
            "temperature": self.governor.last_reading,
            "temperature_limit": self.s.temp_limit,
            "temperature_resume": self.s.temp_resume,
            "sensor": self.governor.sensor_available,
            "last_reconcile": self.last_reconcile,
            "message": self.message or self.alert,
            "alert": self.alert,
            "progress": self.progress,
            "root": str(self.root),
            **self.totals,
        }

    def publish(self) -> None:
        snap = self.snapshot()
        with self._status_lock:
            try:
                write_status(self.s.status_path(), snap)
            except OSError as exc:
                log.warning("cannot write status file %s: %s", self.s.status_path(), exc)
        text = f"{snap['state']}; queue {snap['queue']}"
        if self.progress:
            text += f"; {self.progress['stage']} {self.progress['done']}/{self.progress['total']}"
        if "images" in snap:
            text += f"; {snap['images']} images, {snap['pairs']} pairs"
        if snap["message"]:
            text += f"; {snap['message']}"
        self.notifier.status(text)

    def _heartbeat(self) -> None:
        interval = self.notifier.watchdog_interval()
        period = min(HEARTBEAT_SECONDS, interval) if interval else HEARTBEAT_SECONDS
        while not self.stop_event.wait(period):
            # Between writes too: a deleted store is said within seconds, not at the next
            # change (the writes themselves check before each open).
            pinned = self.guard.identity
            if pinned is not None and file_identity(self.s.db) != pinned:
                self.store_lost.set()
                self.queue.changed.set()
            self.publish()
            if interval and self.clock() - self._alive < STALL_SECONDS:
                self.notifier.watchdog()

    # -- work ----------------------------------------------------------------------------

    def _before_encode(self) -> bool:
        """Between encodes: stop when asked, and wait while the CPU is too hot."""
        self._mark_alive()
        if self.stop_event.is_set():
            return False
        if self.governor.check():
            previous = self.state
            self._set_state("throttled")
            reading = self.governor.last_reading
            at = "?" if reading is None else f"{reading:.0f}"
            self.message = (
                f"CPU at {at} °C, above {self.s.temp_limit:.0f} °C: "
                f"paused until below {self.s.temp_resume:.0f} °C"
            )
            self.publish()
            cooled = self.governor.wait_until_cool(
                self.stop_event.is_set, lambda _t: (self._mark_alive(), self.publish())
            )
            self.message = ""
            self._set_state(previous)
            return cooled and not self.stop_event.is_set()
        return True

    def _record(self, stats: RunStats) -> None:
        if stats.encoded:
            self.encoded_recent.append((self.clock(), stats.encoded))
        self.totals = {
            "images": stats.images,
            "pairs": stats.pairs,
            "encoded_total": stats.encoded_total,
        }
        for path, status, message in stats.failures:
            log.warning("%s: %s: %s", path, status, message)
        for path, why in stats.skipped:
            log.warning("skipped %s: %s", path, why)
        self.publish()

    def reconcile(self) -> RunStats:
        try:
            stats = self.pipeline.run(kind="reconcile")
        except EmptyRoot as exc:
            # Removes nothing, and the daemon goes on watching: files that appear are
            # stored, and a reconcile that finds images again proceeds as usual.
            log.warning("%s", exc)
            self.message = str(exc)
            self.publish()
            raise
        self.last_reconcile = datetime.now(UTC).isoformat(timespec="seconds")
        self._record(stats)
        if self.alert and self.rebuilding:
            self.rebuilding = False
            self.alert += f" Rebuilt from the files: {stats.images} images, {stats.pairs} pairs."
            log.error("%s", self.alert)
            self.publish()
        log.info(
            "reconcile: %d images, %d encoded, %d reused, %d removed, %d failed, %d pairs (%.1f s)",
            stats.images,
            stats.encoded,
            stats.reused,
            stats.removed,
            stats.failed,
            stats.pairs,
            stats.seconds,
        )
        return stats

    def process(self, batch: Batch) -> RunStats:
        stats = self.pipeline.run(batch.paths, batch.folders, kind="events")
        self._record(stats)
        log.info(
            "batch of %d: %d encoded, %d reused, %d moved, %d removed, %d pairs (%.2f s; "
            "encode %.2f s, pairs queryable at %.2f s, queue %.2f s)",
            len(batch),
            stats.encoded,
            stats.reused,
            stats.moved,
            stats.removed,
            stats.pairs,
            stats.seconds,
            stats.encode_seconds,
            stats.queryable_seconds,
            stats.suggest_seconds,
        )
        return stats

    def _guarded(self, work: Callable[[], object], on_fail: Callable[[bool], None]) -> bool:
        """Run one unit of work; a failure is logged and shown, never fatal.

        on_fail(counted): counted is False when the work was not at fault (a busy or
        lost store), so a batch is put back without counting towards giving up.
        """
        try:
            work()
            self.message = ""
            return True
        except EmptyRoot:
            return True  # refused by design; reconcile() said so
        except StoreLost as exc:
            self._lost(str(exc))
            on_fail(False)
            return False
        except StoreBusy as exc:
            self.message = f"store busy: {exc}"
            self._set_state("waiting for store")
            on_fail(False)
        except Exception as exc:
            log.exception("work failed; will retry")
            self.message = f"{type(exc).__name__}: {exc}"
            self._set_state("error")
            on_fail(True)
        self.publish()
        self.stop_event.wait(RETRY_SECONDS)
        return False

    def _lost(self, why: str) -> None:
        """The store file is not the one the daemon opened: write nothing more to it, say
        so everywhere, and rebuild a store from the files with a full reconcile."""
        self.alert = (
            f"STORE LOST: {why} ({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC). Nothing more "
            "was written to it; a full reconcile rebuilds what the files allow (images, "
            "embeddings, pairs). Review decisions cannot be rebuilt: they lived only in "
            "that file; restore them from a backup made with `facelint export --decisions`."
        )
        log.error("%s", self.alert)
        self.store_lost.clear()
        self.rebuilding = True
        self.guard.reset()
        self.reconcile_due.set()
        self._set_state("store lost")
        self.publish()

    def run(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        self.governor.check()  # says once at start when there is no sensor
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        self.publish()
        # Watch first, then reconcile: whatever changes during the reconcile is queued.
        observer = start_observer(self.root, self.queue, self.s.poll, {self.s.quarantine})
        scheduler = self._start_scheduler()
        try:
            while not self.stop_event.is_set():
                if self._guarded(self.reconcile, lambda _counted: None):
                    break
            if self.stop_event.is_set():
                return 0
            self._set_state("idle")
            self.notifier.ready(f"watching {self.root}")
            log.info("watching %s (%s)", self.root, type(observer).__name__)
            self._loop()
        finally:
            self.stop_event.set()
            self.notifier.stopping("stopping")
            self.state = "stopped"
            observer.stop()
            scheduler.shutdown(wait=False)
            self.pipeline.close()
            observer.join(timeout=10)
            heartbeat.join(timeout=5)
            self.publish()
        return 0

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            self._mark_alive()
            if self.store_lost.is_set():
                gone = file_identity(self.s.db) is None
                what = "deleted" if gone else "replaced by another file"
                self._lost(f"store {self.s.db} was {what} while the daemon ran")
            if self.reconcile_due.is_set():
                self.reconcile_due.clear()
                self._guarded(self.reconcile, lambda _counted: self.reconcile_due.set())
                continue
            due = self.queue.next_due()
            if due is None or due > 0:
                self.queue.changed.clear()
                self.queue.changed.wait(min(due if due is not None else 1.0, 1.0))
                continue
            batch = self.queue.pop_ready(self.s.batch_max)
            if not len(batch):
                continue

            def requeue(counted: bool, batch: Batch = batch) -> None:
                for rel in self.queue.requeue(batch, counted=counted):
                    log.error(
                        "giving up on %s for now; the next reconcile retries it", printable(rel)
                    )

            if self._guarded(lambda batch=batch: self.process(batch), requeue):
                self.queue.done(batch)
            if not self.stop_event.is_set():
                self._set_state("idle")

    def _start_scheduler(self) -> Any:
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(
            self.reconcile_due.set,
            "interval",
            minutes=self.s.reconcile_minutes,
            id="reconcile",
            coalesce=True,
            max_instances=1,
        )
        scheduler.start()
        return scheduler

    def request_stop(self, *_: object) -> None:
        if not self.stop_event.is_set():
            log.info("stop requested: finishing the current step")
        self.stop_event.set()
        self.queue.changed.set()


def run_service(settings: Settings) -> int:
    service = Service(settings)
    signal.signal(signal.SIGTERM, service.request_stop)
    signal.signal(signal.SIGINT, service.request_stop)
    return service.run()
