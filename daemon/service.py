"""`facelint daemon`: the pipeline driven by file events, under systemd.

The daemon is made of steps a test can call: `Service.step()` does one unit of work (a
lost store, a reconcile, encodes a hot CPU interrupted, one batch of events) and says
whether it did any; the loop is `while not stopping: step() or wait()`. One thread runs
the steps, so the store has a single writer here. Watchdog's observer thread only fills
the queue. APScheduler runs the periodic jobs — the heartbeat (status file, systemd's
watchdog, the store's identity), the thermal check, and the hourly reconcile, which is
queued for the worker rather than run by the scheduler because only the worker writes.
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
from daemon.pipeline import Pipeline
from daemon.progress import TerminalProgress
from daemon.runstats import ProgressEvent, RunStats
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
            clock=clock,
        )
        self.queue = EventQueue(settings.root, settings.quiet_seconds, clock=clock)
        self.stop_event = threading.Event()
        self.reconcile_due = threading.Event()
        # The first reconcile is the start: the daemon is ready once it succeeded.
        self.reconcile_due.set()
        self.ready = False
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
        # Encodes a hot CPU stopped: run once it has cooled.
        self.encodes_interrupted = False
        # After a failed step, nothing is retried before this (clock) time.
        self.retry_at = 0.0
        self._alive = clock()
        self._status_lock = threading.Lock()
        self._observer: Any = None
        self._scheduler: Any = None

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

    # -- the periodic jobs (APScheduler runs them; tests call them) ----------------------

    def heartbeat(self) -> None:
        """Publish the status, feed systemd's watchdog while the worker makes progress,
        and notice a deleted store within seconds, not at the next change."""
        pinned = self.guard.identity
        if pinned is not None and file_identity(self.s.db) != pinned:
            self.store_lost.set()
            self.queue.changed.set()
        self.publish()
        if self.notifier.watchdog_interval() and self.clock() - self._alive < STALL_SECONDS:
            self.notifier.watchdog()

    def check_temperature(self) -> bool:
        """Read the sensor; say when work pauses and when it may go on. Returns throttled."""
        was = self.governor.throttled
        hot = self.governor.check()
        if hot and not was:
            reading = self.governor.last_reading
            at = "?" if reading is None else f"{reading:.0f}"
            self.message = (
                f"CPU at {at} °C, above {self.s.temp_limit:.0f} °C: "
                f"paused until below {self.s.temp_resume:.0f} °C"
            )
            self.publish()
        elif was and not hot:
            self.message = ""
            self.queue.changed.set()  # wake the worker: work waits
            self.publish()
        return hot

    def request_reconcile(self) -> None:
        self.reconcile_due.set()
        self.queue.changed.set()

    # -- the steps -------------------------------------------------------------------------

    def _before_encode(self) -> bool:
        """Between encodes: stop when asked, or when the CPU got too hot (the rest is
        encoded by a later step, once it has cooled)."""
        self._mark_alive()
        if self.stop_event.is_set():
            return False
        if self.governor.throttled:
            self.encodes_interrupted = True
            return False
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
        if not stats.wrote:
            log.info("batch of %d: nothing changed (%.2f s)", len(batch), stats.seconds)
            return stats
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
        """Run one unit of work; a failure is logged and shown, never fatal, and nothing
        is retried for RETRY_SECONDS.

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
        self.retry_at = self.clock() + RETRY_SECONDS
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

    def _reconciled(self) -> None:
        try:
            self.reconcile()
        except EmptyRoot:
            self._become_ready()  # refused to empty the store, and watching
            raise
        self._become_ready()

    def _become_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.notifier.ready(f"watching {self.root}")
            log.info("watching %s (%s)", self.root, type(self._observer).__name__)

    def step(self) -> bool:
        """One unit of work, if there is one now; True when it did some."""
        self._mark_alive()
        if self.stop_event.is_set():
            return False
        if self.store_lost.is_set():
            gone = file_identity(self.s.db) is None
            what = "deleted" if gone else "replaced by another file"
            self._lost(f"store {self.s.db} was {what} while the daemon ran")
            return True
        if self.clock() < self.retry_at:
            return False
        if self.governor.throttled:
            # Nothing new starts while the CPU is too hot.
            self._set_state("throttled")
            return False
        if self.reconcile_due.is_set():
            self.reconcile_due.clear()
            self._guarded(self._reconciled, lambda _counted: self.reconcile_due.set())
            self._idle()
            return True
        if not self.ready:
            return False
        if self.encodes_interrupted:
            self.encodes_interrupted = False
            self._guarded(
                lambda: self.pipeline.run([], kind="events"),
                lambda _counted: setattr(self, "encodes_interrupted", True),
            )
            self._idle()
            return True
        due = self.queue.next_due()
        if due is None or due > 0:
            self._idle()
            return False
        batch = self.queue.pop_ready(self.s.batch_max)
        if not len(batch):
            return False

        def requeue(counted: bool) -> None:
            for rel in self.queue.requeue(batch, counted=counted):
                log.error("giving up on %s for now; the next reconcile retries it", printable(rel))

        if self._guarded(lambda: self.process(batch), requeue):
            self.queue.done(batch)
        self._idle()
        return True

    def _idle(self) -> None:
        if not self.stop_event.is_set() and self.state not in (
            "error",
            "waiting for store",
            "store lost",
        ):
            self._set_state("throttled" if self.governor.throttled else "idle")

    def wait(self, limit: float = 1.0) -> None:
        """Sleep until there may be work: an event, a batch coming due, a retry, a stop."""
        now = self.clock()
        due = self.queue.next_due()
        timeout = limit if due is None else min(max(due, 0.01), limit)
        if self.retry_at > now:
            timeout = min(timeout, self.retry_at - now)
        self.queue.changed.clear()
        self.queue.changed.wait(max(timeout, 0.01))

    # -- running -------------------------------------------------------------------------

    def open(self) -> None:
        """Start watching (first, so that whatever changes during the first reconcile is
        queued) and publish the first status."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.check_temperature()  # says once at start when there is no sensor
        self.publish()
        self._observer = start_observer(self.root, self.queue, self.s.poll, {self.s.quarantine})

    def schedule(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler

        interval = self.notifier.watchdog_interval()
        beat = min(HEARTBEAT_SECONDS, interval) if interval else HEARTBEAT_SECONDS
        scheduler = BackgroundScheduler(timezone="UTC")
        for job, seconds, name in (
            (self.heartbeat, beat, "heartbeat"),
            (self.check_temperature, self.s.temp_check_seconds, "thermal"),
            (self.request_reconcile, self.s.reconcile_minutes * 60.0, "reconcile"),
        ):
            scheduler.add_job(
                job, "interval", seconds=seconds, id=name, coalesce=True, max_instances=1
            )
        scheduler.start()
        self._scheduler = scheduler

    def close(self) -> None:
        self.stop_event.set()
        self.notifier.stopping("stopping")
        self.state = "stopped"
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._observer is not None:
            self._observer.stop()
        self.pipeline.close()
        if self._observer is not None:
            self._observer.join(timeout=10)
        self.publish()

    def run(self) -> int:
        self.open()
        self.schedule()
        try:
            while not self.stop_event.is_set():
                if not self.step():
                    self.wait()
        finally:
            self.close()
        return 0

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
