"""Watching the data root: watchdog events become a debounced queue of paths to sync.

A file is handed on once it is complete: a Closed event (the writer closed it), or no
event and an unchanged size and mtime for `quiet` seconds. Renames are complete at once,
and both ends of a move leave together so the pipeline sees a relabel, not a delete and
an add.
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
from watchdog.observers.polling import PollingObserver

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
        dropped. `counted=False` (the store was busy, not the batch at fault) only puts
        the batch back.
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
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, queue: EventQueue, ignored_top: set[str]):
        self.root = str(root)
        self.queue = queue
        self.ignored_top = ignored_top

    def _rel(self, path: str | bytes) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        rel = os.path.relpath(path, self.root)
        if rel == "." or rel.startswith(".."):
            return None
        rel = rel.replace(os.sep, "/")
        parts = rel.split("/")
        if parts[0] in self.ignored_top or any(p.startswith(".") for p in parts):
            return None
        return rel

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        src = self._rel(event.src_path)
        if event.is_directory:
            self._on_folder(event, src)
            return
        if event.event_type == "moved":
            # A rename is complete at once; both ends leave together (a relabel).
            for rel in (src, self._rel(event.dest_path)):
                if rel is not None:
                    self.queue.touch(rel, ready_now=True)
            return
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
                rel = self._rel(os.path.join(dirpath, name))
                if rel is not None:
                    self.queue.touch(rel, ready_now=ready_now)


def start_observer(
    root: Path, queue: EventQueue, poll: bool, ignored_top: set[str]
) -> BaseObserver:
    """A running observer on root. Falls back to polling when inotify runs out of watches."""
    handler = _Handler(root, queue, ignored_top)
    if not poll:
        observer: BaseObserver = Observer()
        try:
            observer.schedule(handler, str(root), recursive=True)
            observer.start()
            return observer
        except OSError as exc:
            log.warning(
                "cannot watch %s with inotify (%s): falling back to polling; raise "
                "fs.inotify.max_user_watches to avoid this",
                root,
                exc,
            )
            with contextlib.suppress(Exception):  # it may never have started
                observer.stop()
    observer = PollingObserver(timeout=2)
    observer.schedule(handler, str(root), recursive=True)
    observer.start()
    return observer
