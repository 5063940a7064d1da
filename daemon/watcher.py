"""Watching the data root: watchdog events become a debounced queue of paths to sync.

A file is handed on once it is complete: a Closed event (the writer closed it), or no
event and an unchanged size and mtime for `quiet` seconds. Renames are complete at once,
and both ends of a move leave together so the pipeline sees a relabel, not a delete and
an add.

The root itself may go: deleted, renamed away, unmounted, replaced by a restore. Its own
watch cannot see it come back, so the root's parent is watched too (not recursively: only
events naming the root count), and the service also compares the root's identity at every
step. Nothing is followed through a symbolic link, and nothing outside the root is queued.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserverVFS

from daemon.inventory import is_image_name

log = logging.getLogger("facelint.watcher")

SETTLE_SECONDS = 0.3
MAX_HOLD_SECONDS = 5.0


@dataclass
class _Entry:
    last_event: float
    ready_now: bool = False
    stat: tuple[int, int] | None = None
    folder: bool = False
    first_ready: float = 0.0
    # A failed batch's entries come back as a group that leaves alone (see requeue).
    group: int | None = None
    # Put back because the store failed, not the file: waits for the store, never dropped.
    held: bool = False


@dataclass
class Batch:
    paths: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    split: bool = False  # a part of a failed batch: split again if it fails

    def __len__(self) -> int:
        return len(self.paths) + len(self.folders)


class EventQueue:
    """Root-relative paths waiting to be synced, each once however many events it had."""

    def __init__(self, root: Path, quiet: float, clock: Callable[[], float] = time.monotonic):
        self.root = root
        self.quiet = quiet
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._last_any = 0.0
        self._lock = threading.Lock()
        self.changed = threading.Event()
        # Failures per path, across pops: a path leaves _entries while its batch runs.
        self._failures: dict[str, int] = {}
        self._groups = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def held(self) -> int:
        """Paths waiting because the store failed (see requeue's `counted`)."""
        with self._lock:
            return sum(1 for e in self._entries.values() if e.held)

    def touch(self, relpath: str, ready_now: bool = False, folder: bool = False) -> None:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(relpath)
            if entry is None:
                entry = self._entries[relpath] = _Entry(now, folder=folder)
            entry.last_event = now
            self._last_any = now
            # A write after a close reopens the file: wait for the next close or quiet.
            if ready_now and not entry.ready_now:
                entry.first_ready = now
            entry.ready_now = ready_now
            entry.folder = entry.folder or folder
        self.changed.set()

    def requeue(self, batch: Batch, max_attempts: int = 3, counted: bool = True) -> list[str]:
        """Put a failed batch back; returns the paths given up on (the periodic reconcile
        tries those again).

        A batch that failed `max_attempts` times is split in halves that are retried
        apart, and a failed half is split again at once, so one poisoned path cannot hold
        the others back: it ends up alone, and alone after `max_attempts` failures it is
        dropped. `counted=False` (the store failed — busy, lost, unwritable, corrupt — not
        the batch) only puts the batch back, marked held, however often: those paths
        are retried until the store works again, never given up on.
        """
        items = [(p, False) for p in batch.paths] + [(f, True) for f in batch.folders]
        now = self.clock()
        with self._lock:
            tries = 0
            if counted:
                for rel, _ in items:
                    self._failures[rel] = self._failures.get(rel, 0) + 1
                tries = max(self._failures[rel] for rel, _ in items) if items else 0
            if counted and len(items) == 1 and tries >= max_attempts:
                rel = items[0][0]
                self._failures.pop(rel, None)
                return [rel]
            split = counted and len(items) > 1 and (tries >= max_attempts or batch.split)
            halves = [items[: len(items) // 2], items[len(items) // 2 :]] if split else [items]
            for half in halves:
                self._groups += 1
                for rel, folder in half:
                    entry = self._entries.setdefault(rel, _Entry(now, folder=folder))
                    entry.ready_now = True
                    entry.first_ready = now
                    entry.group = self._groups if (split or batch.split) else None
                    entry.held = not counted
        self.changed.set()
        return []

    def done(self, batch: Batch) -> None:
        """The batch was stored: forget its failures."""
        with self._lock:
            for rel in [*batch.paths, *batch.folders]:
                self._failures.pop(rel, None)

    def _settled(self, now: float) -> bool:
        """Complete files leave once the events have paused for a moment, so that a burst
        (or both ends of a folder move) becomes one batch; a stream of events that never
        pauses still lets them out after MAX_HOLD_SECONDS."""
        settle = min(SETTLE_SECONDS, self.quiet)
        oldest = min((e.first_ready for e in self._entries.values() if e.ready_now), default=now)
        return now - self._last_any >= settle or now - oldest >= MAX_HOLD_SECONDS

    def next_due(self) -> float | None:
        """Seconds until the earliest entry may be ready (0 = now), None when empty."""
        now = self.clock()
        with self._lock:
            if not self._entries:
                return None
            settle = min(SETTLE_SECONDS, self.quiet)
            due = [
                (self._last_any + settle - now) if e.ready_now else e.last_event + self.quiet - now
                for e in self._entries.values()
            ]
            return max(0.0, min(due))

    def pop_ready(self, limit: int) -> Batch:
        """Entries that are complete now, at most `limit`."""
        now = self.clock()
        batch = Batch()
        with self._lock:
            settled = self._settled(now)
            # Parts of a failed batch leave one group at a time, alone.
            group = next((e.group for e in self._entries.values() if e.group is not None), None)
            batch.split = group is not None
            for rel, entry in list(self._entries.items()):
                if len(batch) >= limit:
                    break
                if entry.group != group:
                    continue
                if entry.ready_now:
                    if not settled:
                        continue
                elif now - entry.last_event < self.quiet:
                    continue
                elif not entry.folder:
                    current = _stat(self.root / rel)
                    if current is not None and current != entry.stat:
                        # Still growing (or first look): check again after another quiet.
                        entry.stat = current
                        entry.last_event = now
                        continue
                del self._entries[rel]
                (batch.folders if entry.folder else batch.paths).append(rel)
        return batch


def _stat(path: Path) -> tuple[int, int] | None:
    # lstat: a link's own size and mtime. Through `data/up -> ..` a stat would see the
    # parent folder, whose mtime the status file beside the store changes every 2 s.
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class _Handler(FileSystemEventHandler):
    def __init__(
        self,
        root: Path,
        queue: EventQueue,
        ignored_top: set[str],
        on_root_event: Callable[[], None] = lambda: None,
        extensions: tuple[str, ...] | None = None,
    ):
        self.root = str(root)
        self.queue = queue
        self.ignored_top = ignored_top
        self.on_root_event = on_root_event
        self.extensions = extensions

    def _worth(self, rel: str | None) -> str | None:
        """rel, when a file event for it can matter: an image name, or a symbolic link
        (the pipeline says why a linked folder is not followed). Anything else — a store
        or status file kept inside the root, notes, temp files — never enters the queue."""
        if rel is None or self.extensions is None:
            return rel
        if is_image_name(rel.rsplit("/", 1)[-1], self.extensions):
            return rel
        return rel if os.path.islink(os.path.join(self.root, rel)) else None

    def _rel(self, path: str | bytes) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        rel = os.path.relpath(path, self.root)
        if rel in (".", "..") or rel.startswith("../"):
            return None
        rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        if parts[0] in self.ignored_top or any(p.startswith(".") for p in parts):
            return None
        return rel

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.event_type in ("deleted", "moved") and os.fsdecode(event.src_path) == self.root:
            # The root's own watch ends here (inotify's delete-self, a poll that finds
            # no folder): the service finds out what became of the root.
            self.on_root_event()
            return
        src = self._rel(event.src_path)
        if event.is_directory:
            self._on_folder(event, src)
            return
        if event.event_type == "moved":
            # A rename is complete at once; both ends leave together (a relabel).
            for rel in (self._worth(src), self._worth(self._rel(event.dest_path))):
                if rel is not None:
                    self.queue.touch(rel, ready_now=True)
            return
        src = self._worth(src)
        if src is None:
            return
        ready = isinstance(event, FileClosedEvent) or event.event_type == "deleted"
        self.queue.touch(src, ready_now=ready)

    def _on_folder(self, event: FileSystemEvent, src: str | None) -> None:
        if isinstance(event, DirDeletedEvent | DirMovedEvent) and src is not None:
            # What the store holds under a vanished folder is resolved as one unit.
            self.queue.touch(src, ready_now=True, folder=True)
        if isinstance(event, DirMovedEvent):
            self._touch_files_under(event.dest_path, ready_now=True)
        elif isinstance(event, DirCreatedEvent):
            # Files may still be arriving in a new folder: each waits until complete.
            self._touch_files_under(event.src_path, ready_now=False)

    def _touch_files_under(self, folder: str | bytes, ready_now: bool) -> None:
        base = os.fsdecode(folder)
        if os.path.islink(base):
            # os.walk would list a linked folder's target (anywhere, all of it): the
            # pipeline refuses what lies under a link anyway, so don't even look.
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                rel = self._worth(self._rel(os.path.join(dirpath, name)))
                if rel is not None:
                    self.queue.touch(rel, ready_now=ready_now)


class _ParentHandler(FileSystemEventHandler):
    """Events in the root's parent that name the root: it was created, deleted, or moved
    away or back. Nothing here enters the queue (the store and its status file may live
    in that folder, and change every few seconds)."""

    def __init__(self, root: Path, on_root_event: Callable[[], None]):
        self.root = str(root)
        self.on_root_event = on_root_event

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("created", "deleted", "moved"):
            return
        ends = [event.src_path, getattr(event, "dest_path", "")]
        if any(os.fsdecode(p) == self.root for p in ends if p):
            self.on_root_event()


def _polling(interval: float) -> BaseObserver:
    # lstat, not stat: a polling snapshot would otherwise walk into every linked folder
    # (`data/up -> ..` loops through the parent, `data/all -> /` through the disk).
    return PollingObserverVFS(os.lstat, os.scandir, polling_interval=interval)


def _observe(
    path: Path,
    handler: FileSystemEventHandler,
    poll: bool,
    recursive: bool,
    poll_seconds: float,
) -> BaseObserver:
    """A running observer on path. Falls back to polling when inotify runs out of watches."""
    if not poll:
        observer: BaseObserver = Observer()
        try:
            observer.schedule(handler, str(path), recursive=recursive)
            observer.start()
            return observer
        except OSError as exc:
            log.warning(
                "cannot watch %s with inotify (%s): falling back to polling; raise "
                "fs.inotify.max_user_watches to avoid this",
                path,
                exc,
            )
            with contextlib.suppress(Exception):  # it may never have started
                observer.stop()
    observer = _polling(poll_seconds)
    observer.schedule(handler, str(path), recursive=recursive)
    observer.start()
    return observer


def _stop(observer: BaseObserver | None) -> None:
    if observer is not None:
        with contextlib.suppress(Exception):
            observer.stop()
            observer.join(timeout=10)


class RootWatcher:
    """The root's recursive watch, which the service can drop and start again (the root
    went and came back), and a watch on the root's parent that lives as long as the
    service: `on_root_event()` is called, from an observer thread, whenever either sees
    the root itself created, deleted or moved."""

    def __init__(
        self,
        root: Path,
        queue: EventQueue,
        poll: bool,
        ignored_top: set[str],
        on_root_event: Callable[[], None],
        extensions: tuple[str, ...] | None = None,
        *,
        poll_seconds: float,
    ):
        # Absolute: the parent of `data` is `.`, and events name paths as watched.
        root = Path(os.path.abspath(root))
        self.root = root
        self.poll = poll
        self.poll_seconds = poll_seconds
        self.handler = _Handler(root, queue, ignored_top, on_root_event, extensions)
        self.parent_handler = _ParentHandler(root, on_root_event)
        self._root: BaseObserver | None = None
        self._parent: BaseObserver | None = None

    @property
    def kind(self) -> str:
        return type(self._root).__name__ if self._root is not None else "not watching"

    def start(self) -> None:
        self.watch_root()
        if self.poll:
            # A poll of the root finds it gone by itself, and the service's identity
            # check at each step finds it back: no second poller on the parent.
            return
        try:
            self._parent = Observer()
            self._parent.schedule(self.parent_handler, str(self.root.parent), recursive=False)
            self._parent.start()
        except OSError as exc:
            log.warning(
                "cannot watch %s, the root's parent (%s): a root moved away and back "
                "within a second may go unseen",
                self.root.parent,
                exc,
            )
            _stop(self._parent)
            self._parent = None

    def watch_root(self) -> None:
        """(Re)start the root's recursive watch on whatever the root is now. A root that
        is a symbolic link is watched where it leads (an inotify watch on the link would
        watch the link itself), and the events are named from there."""
        self.unwatch_root()
        real = os.path.realpath(self.root)
        self.handler.root = real
        self._root = _observe(
            Path(real), self.handler, self.poll, recursive=True, poll_seconds=self.poll_seconds
        )

    def unwatch_root(self) -> None:
        _stop(self._root)
        self._root = None

    def stop(self) -> None:
        self.unwatch_root()
        _stop(self._parent)
        self._parent = None
