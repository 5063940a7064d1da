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
import stat
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
from daemon.encoders.ray_pool import ClusterUnavailable
from daemon.inventory import EmptyRoot, printable
from daemon.notify import SystemdNotifier
from daemon.pipeline import Pipeline
from daemon.progress import TerminalProgress
from daemon.runstats import ProgressEvent, RunStats
from daemon.thermal import TemperatureSource, ThermalGovernor, make_temperature_source
from daemon.watcher import Batch, EventQueue, RootWatcher
from store.connection import (
    StoreBusy,
    StoreGuard,
    StoreLost,
    StoreMissing,
    file_identity,
    give_back_freed_memory,
)
from store.db import Store

log = logging.getLogger("facelint.daemon")

HEARTBEAT_SECONDS = 2.0
# The worker counts as alive while it reported progress this recently; past it, systemd's
# watchdog is no longer fed and restarts a hung daemon. One encode takes seconds, one
# lock wait reports every few seconds, so only a real hang gets this far.
STALL_SECONDS = 300.0
RETRY_SECONDS = 5.0
# How long the check that the store works, after a failed step, waits for its lock.
PROBE_SECONDS = 1.0

# The daemon's states beyond the pipeline's (scanning, encoding, comparing, ..., idle).
ERROR = "error"
WAITING_FOR_STORE = "waiting for store"
STORE_LOST = "store lost"
ROOT_MISSING = "root missing"
# States that stay until the work that cleared them succeeds: `_idle` keeps them.
STICKY_STATES = (ERROR, WAITING_FOR_STORE, STORE_LOST, ROOT_MISSING)


def dir_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the folder at path (through a link: what it resolves to); None
    when there is no folder there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class DaemonRunning(RuntimeError):
    """Another daemon already keeps this store."""


def lock_path(settings: Settings) -> Path:
    """The lock file of the store's resolved path: a symbolic link to the store, or a
    missing store named through a link, leads to the same lock file."""
    db = Path(os.path.realpath(settings.db))
    return db.with_name(db.name + ".daemon.lock")


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def flock_holder(identity: tuple[int, int]) -> str:
    """The pid holding a flock on the file (device, inode), from /proc/locks; '' when it
    cannot be told (not Linux, another pid namespace)."""
    dev, ino = identity
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    try:
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    for line in text.splitlines():
        parts = line.split()
        if "FLOCK" in parts and "->" not in parts:  # "->": a waiter, not the holder
            i = parts.index("FLOCK")
            if len(parts) > i + 4 and parts[i + 4] == want:
                return parts[i + 3]
    return ""


class DaemonLock:
    """One daemon per store, by the store file's identity, whatever path names it.

    Two locks, both exclusive flocks the kernel drops when the process ends, however it
    ends (kill -9 too), so nothing left behind ever blocks a restart:

    1. `<resolved db path>.daemon.lock`, holding the owner's pid for the message. A
       second daemon by the same name, or through a symbolic link, stops here. A store
       that does not exist yet is created under this lock, so two daemons that would
       create it by one name cannot both do so.
    2. The store file itself, by inode: a hard link (or any other name: a bind mount) is
       the same inode, so its flock is the same lock. After the flock the name is looked
       up again, and the lock taken again if the name was pointed at another file in
       between: when `follow()` returns, the lock is on the file the name names.

    Why this is race-free: flock is atomic per open file, and every daemon locks the inode
    it is about to use only through this sequence, so of two daemons on one file exactly
    one holds lock 2. A store replaced while a daemon runs (lost and rebuilt) is a new
    inode: the service calls `follow()` once it writes to the new file, and stops if
    another daemon locked it first.

    DuckDB locks its file with fcntl (POSIX) locks, which are independent of flock on
    local file systems; the descriptor below stays open for the lock's life, since closing
    any descriptor of a file drops the process's POSIX locks on it (so `follow()` runs
    only between the worker's units of work). Descriptors are close-on-exec: encoder
    workers and the dashboard never inherit the locks.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.path = lock_path(settings)
        self.identity: tuple[int, int] | None = None
        self._path_fd: int | None = None
        self._store_fd: int | None = None

    def _refused(self, pid: str, held: str) -> DaemonRunning:
        return DaemonRunning(
            f"another facelint daemon{f' (pid {pid})' if pid else ''} already keeps the "
            f"store {self.settings.db}: stop it first, or give this one another --db "
            f"({held})"
        )

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not _try_flock(fd):
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise self._refused(pid, f"lock held on {self.path}")
        self._path_fd = fd
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            self._create_store()
            self.follow()
        except BaseException:
            self.release()
            raise

    def _create_store(self) -> None:
        db = Path(self.settings.db)
        if db.exists():
            return
        from store.connection import open_store

        try:
            with open_store(db, timeout=self.settings.lock_timeout):
                pass
        except Exception as exc:  # the pipeline meets it again, and says so
            log.warning("cannot create the store %s now: %s", db, exc)

    def follow(self) -> None:
        """Hold the flock of the file the store's path names now (DaemonRunning when
        another daemon holds it). Without a file to lock, only the path lock holds, and
        the service follows once the store exists."""
        db = Path(self.settings.db)
        for _ in range(10):
            try:
                fd = os.open(db, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                log.warning("cannot lock the store file %s (%s): locked by its path only", db, exc)
                return
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino)
            if identity == self.identity:
                # Held already: this descriptor goes, and with it any POSIX lock of this
                # process on the file; callers run between units of work, when there is none.
                os.close(fd)
                return
            if not _try_flock(fd):
                os.close(fd)
                raise self._refused(
                    flock_holder(identity),
                    f"it holds the store file {os.path.realpath(db)} under another name",
                )
            if file_identity(db) != identity:
                os.close(fd)  # pointed at another file meanwhile: lock that one
                continue
            self._close_store_fd()
            self._store_fd, self.identity = fd, identity
            return
        log.warning("the store file %s keeps being replaced: locked by its path only", db)

    def _close_store_fd(self) -> None:
        if self._store_fd is not None:
            os.close(self._store_fd)
            self._store_fd = None
            self.identity = None

    def release(self) -> None:
        self._close_store_fd()
        if self._path_fd is not None:
            os.close(self._path_fd)
            self._path_fd = None


@contextmanager
def daemon_lock(settings: Settings) -> Iterator[DaemonLock]:
    """One daemon per store for the block's life (DaemonLock says how); DaemonRunning
    when another daemon keeps the store, by whatever name."""
    lock = DaemonLock(settings)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


class Service:
    def __init__(
        self,
        settings: Settings,
        temperature: TemperatureSource | None = None,
        notifier: SystemdNotifier | None = None,
        clock: Callable[[], float] = time.monotonic,
        lock: DaemonLock | None = None,
    ):
        self.s = settings
        self.lock = lock
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
        # The daemon's opens wait `daemon_store_wait`, not a CLI write's `lock_timeout`:
        # past it the work is put back and retried (RETRY_SECONDS), so a reader left open
        # never stalls the daemon for minutes, and nothing is lost.
        self.pipeline = Pipeline(
            settings.with_overrides(lock_timeout=settings.daemon_store_wait),
            on_progress=self._progress,
            on_state=self._set_state,
            on_wait=self._store_wait,
            before_encode=self._before_encode,
            guard=self.guard,
        )
        # The whole of each wait, once it ended: the status file keeps the longest.
        self.pipeline.store.on_opened = self._store_opened
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
        self._status_failing = False
        self.watcher: RootWatcher | None = None
        self._scheduler: Any = None
        # The root folder being watched, by identity; None while it is gone. An observer
        # sets root_event when it sees the root itself created, deleted or moved.
        self._root_id: tuple[int, int] | None = None
        self.root_away = False
        self.root_event = threading.Event()
        # The signal that stopped the daemon, if one did (SIGINT: exit 130).
        self.stopped_by: int | None = None
        # The last wait's seconds so far: a smaller figure is the start of a new wait.
        self._waited_before = float("inf")
        self.longest_store_wait = 0.0
        self.search_server: Any = None

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
        from daemon.common.storewait import held_by

        self._mark_alive()
        self.message = (
            f"the store is {held_by(self.s.db)}: waiting {waited:.0f} s of at most "
            f"{self.s.daemon_store_wait:g} s (`daemon_store_wait`), then the work is put back "
            f"and retried {RETRY_SECONDS:.0f} s later"
        )
        if waited < self._waited_before:  # a new wait (the pipeline logs only its first)
            log.info("%s", self.message)
        self._waited_before = waited
        self.publish()

    def _store_opened(self, waited: float) -> None:
        self.longest_store_wait = max(self.longest_store_wait, waited)

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
            # Changed paths a store failure holds back: retried until the store works.
            "waiting_for_store": self.queue.held(),
            # Seconds of the longest wait for the store that ended in an open, since the
            # start (one that gave up waited daemon_store_wait: the message says so).
            "longest_store_wait": round(self.longest_store_wait, 2),
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
                # The old file stays, and its heartbeat ages: readers call it stale
                # (daemon/common/statusfile.py) rather than believe its last state.
                if not self._status_failing:
                    log.error("cannot write status file %s: %s", self.s.status_path(), exc)
                self._status_failing = True
            else:
                if self._status_failing:
                    log.warning("status file %s written again", self.s.status_path())
                self._status_failing = False
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
        if dir_identity(self.root) != self._root_id:
            self.root_event.set()
            self.queue.changed.set()  # the worker says so and watches again
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

    def _on_root_event(self) -> None:
        """From an observer thread: the root itself was created, deleted or moved."""
        self.root_event.set()
        self.queue.changed.set()

    # -- the root going and coming back ----------------------------------------------------

    def _root_changed(self) -> bool:
        """Whether the root is not the folder being watched (gone, back, replaced), or an
        observer saw it move; cheap: one stat."""
        return self.root_event.is_set() or dir_identity(self.root) != self._root_id

    def _follow_root(self) -> None:
        """Say that the root went, or watch it again and reconcile at once: whatever was
        added while it was away (or in its replacement) is found by the reconcile, and
        whatever comes after by the new watch."""
        self.root_event.clear()
        now = dir_identity(self.root)
        if now is None:
            if not self.root_away:
                self.root_away = True
                self._root_id = None
                if self.watcher is not None:
                    self.watcher.unwatch_root()
                self.message = (
                    f"data root {printable(str(self.root))} is gone (deleted, moved away or "
                    f"unmounted) since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC: nothing is "
                    "removed from the store; watching for it to come back"
                )
                log.error("%s", self.message)
                self._set_state(ROOT_MISSING)
                self.publish()
            return
        was_away = self.root_away
        self.root_away = False
        self._root_id = now
        if self.watcher is not None:
            self.watcher.watch_root()
        what = "back" if was_away else "a new folder (replaced, or moved away and back)"
        log.warning(
            "data root %s is %s: watching it again and reconciling", printable(str(self.root)), what
        )
        self.message = f"data root {printable(str(self.root))} is {what}: reconciling"
        self.reconcile_due.set()
        if self.state == ROOT_MISSING:
            self.state = "scanning"
        self.publish()

    def _follow_lock(self) -> None:
        """Once the store the daemon writes is another file (rebuilt after it was lost),
        lock that file too; another daemon that got there first keeps it, and this one
        stops (DaemonRunning)."""
        if self.lock is None or self.guard.identity in (None, self.lock.identity):
            return
        try:
            self.lock.follow()
        except DaemonRunning as exc:
            self.alert = f"{exc}: this daemon stops"
            log.error("%s", self.alert)
            self.publish()
            raise  # out of run(): the CLI exits 5, as for any second daemon

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
            on_fail(False)
            self.message = f"store busy: {exc}{self._held_note()}"
            log.warning("%s; put back, retried in %.0f s", self.message, RETRY_SECONDS)
            self._set_state(WAITING_FOR_STORE)
        except ClusterUnavailable as exc:
            # The cluster's fault, not the files': nothing counts towards giving up on them,
            # and what was not encoded stays to be encoded.
            log.error("encoding cluster unavailable, will retry: %s", exc)
            on_fail(False)
            self.message = f"encoding cluster unavailable: {exc}"
            self._set_state(ERROR)
        except Exception as exc:
            if self._store_failed(exc):
                # Not the files' fault: nothing is counted towards giving up on them.
                log.error("store unavailable, will retry: %s: %s", type(exc).__name__, exc)
                on_fail(False)
                self.message = f"store unavailable: {type(exc).__name__}: {exc}{self._held_note()}"
            else:
                log.exception("work failed; will retry")
                on_fail(True)
                self.message = f"{type(exc).__name__}: {exc}"
            self._set_state(ERROR)
        self.publish()
        self.retry_at = self.clock() + RETRY_SECONDS
        return False

    def _held_note(self) -> str:
        held = self.queue.held()
        if not held:
            return ""
        paths = f"{held} changed path{'s' if held != 1 else ''}"
        return f"; {paths} wait for it (retried every {RETRY_SECONDS:.0f} s)"

    def _store_failed(self, exc: Exception) -> bool:
        """Whether a failed step failed because of the store (unreadable, unwritable,
        corrupt, gone) rather than because of what it worked on. I/O errors are the
        store's (a bad image is caught where it is read, with a status); anything else
        is the store's when a bare write open of it fails too."""
        import duckdb

        if isinstance(exc, StoreMissing | OSError | duckdb.IOException | duckdb.FatalException):
            return True
        probe = Store(self.s.db, lock_timeout=PROBE_SECONDS, guard=self.guard)
        try:
            with probe.writing():
                pass
        except Exception:
            return True
        return False

    def _lost(self, why: str) -> None:
        """The store file is not the one the daemon opened: write nothing more to it, say
        so everywhere, and rebuild a store from the files with a full reconcile."""
        self.alert = (
            f"STORE LOST: {why} ({datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC). Nothing more "
            "was written to it; a full reconcile rebuilds what the files allow (images, "
            "embeddings, pairs). Review decisions cannot be rebuilt: they lived only in "
            "that file; restore them with `facelint import --decisions FILE` from a backup "
            "made with `facelint export --decisions FILE`."
        )
        log.error("%s", self.alert)
        self.store_lost.clear()
        self.rebuilding = True
        self.guard.reset()
        self.reconcile_due.set()
        self._set_state(STORE_LOST)
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
            kind = self.watcher.kind if self.watcher is not None else "no observer"
            log.info("watching %s (%s)", self.root, kind)

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
        self._follow_lock()
        if self._root_changed():
            self._follow_root()
            return True
        if self.root_away:
            # Nothing runs on a root that is not there: a reconcile would create an empty
            # folder in its place, and a batch would take its files for deleted.
            return False
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
        # The step's snapshot and results are gone now; the store's last detach came
        # before they went (store/connection.py: give_back_freed_memory).
        give_back_freed_memory()
        if not self.stop_event.is_set() and self.state not in STICKY_STATES:
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
        self.watcher = RootWatcher(
            self.root,
            self.queue,
            self.s.poll,
            {self.s.quarantine},
            self._on_root_event,
            tuple(self.s.extensions),
            poll_seconds=self.s.poll_seconds,
        )
        self._root_id = dir_identity(self.root)
        self.watcher.start()
        self.start_search()

    def start_search(self) -> None:
        """Answer searches over the socket beside the status file, with a model loaded
        once (daemon/search.py); a socket that cannot be served is said, and `facelint
        search` then encodes by itself."""
        from daemon.search import SearchServer

        if self.search_server is not None:
            return
        server = SearchServer(self.s)
        if server.start():
            self.search_server = server

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
        if self.watcher is not None:
            self.watcher.stop()
        if self.search_server is not None:
            self.search_server.stop()
            self.search_server = None
        self.pipeline.close()
        self.publish()

    def run(self) -> int:
        self.open()
        if self.search_server is not None:
            self.search_server.preload()
        self.schedule()
        try:
            while not self.stop_event.is_set():
                if not self.step():
                    self.wait()
        finally:
            self.close()
        # Ctrl-C is an interruption (the shell's 128 + SIGINT); SIGTERM and SIGHUP are
        # the clean stops a service manager and a closed terminal ask for.
        return 130 if self.stopped_by == signal.SIGINT else 0

    def request_stop(self, signum: int | None = None, _frame: object = None) -> None:
        if not self.stop_event.is_set():
            by = f" ({signal.Signals(signum).name})" if signum else ""
            log.info("stop requested%s: finishing the current step", by)
            self.stopped_by = signum
        self.stop_event.set()
        self.queue.changed.set()


# SIGHUP stops cleanly, like SIGTERM: a closed terminal ends `facelint daemon`/`up` with
# the store closed and the status "stopped". Settings are read at start only, so there is
# no reload: `systemctl restart` applies a change (the unit has no ExecReload=).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_service(settings: Settings, lock: DaemonLock | None = None) -> int:
    service = Service(settings, lock=lock)
    for signum in STOP_SIGNALS:
        signal.signal(signum, service.request_stop)
    return service.run()
