"""Encoding in worker processes: dlib holds the GIL for most of its work, so threads
would not use a second core.

Workers exit when their parent dies: a `kill -9` of the daemon must not leave them (and
their models, ~110 MB each) behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from daemon.common.parentdeath import die_with_parent
from daemon.config import Settings
from daemon.encoders import registry
from daemon.encoders.base import Encoder, Encoding, encode_file
from store.vocab import Status

# How often a worker checks that its parent is alive where the kernel cannot tell it.
PARENT_POLL_SECONDS = 1.0

_worker_encoder: Encoder | None = None
_worker_max_pixels = 0


def _exit_with_parent(parent: int) -> None:
    """Make this process end when `parent` does.

    On Linux the kernel sends SIGKILL at the parent's death (daemon/common/parentdeath.py,
    shared with the dashboard beside `facelint up`); a watchdog thread covers other
    systems.
    """
    die_with_parent(parent)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _init_worker(settings: Settings, parent: int) -> None:
    global _worker_encoder, _worker_max_pixels
    _exit_with_parent(parent)
    # Ctrl-C goes to the terminal's whole process group. The daemon stops on it (its
    # step finished, then this pool closed); a worker that took it too died mid-job and
    # printed a KeyboardInterrupt traceback under `facelint up`.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One BLAS/onnxruntime thread per worker: the pool already uses every core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_max_pixels = settings.max_pixels
    _worker_encoder = registry.build(settings, threads=1)


def _encode_one(path: str) -> Encoding:
    assert _worker_encoder is not None
    return encode_file(_worker_encoder, Path(path), _worker_max_pixels)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class EncoderPool:
    """A process pool of the settings' encoder, started on first use, kept until close()."""

    def __init__(self, settings: Settings, workers: int | None = None):
        registry.check(settings)  # fail here, not in every worker
        self._settings = settings
        chosen = settings.workers if workers is None else workers
        self.workers = chosen or cpu_count()
        self.model_id = registry.model_id(settings)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the daemon has watcher and scheduler threads, and a forked
            # child of a threaded parent can deadlock on a lock held at fork time.
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(self._settings, os.getpid()),
            )
        return self._pool

    def pids(self) -> list[int]:
        """The worker processes' ids (empty before the first encode)."""
        if self._pool is None:
            return []
        return sorted(self._pool._processes)  # the executor keeps no public list

    def encode(
        self,
        items: Iterable[tuple[str, Path]],
        before_each: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[str, Encoding]]:
        """Yield (key, Encoding) as they finish. `before_each()` runs before each submit
        (thermal back-off waits there); returning False stops submitting more."""
        pool = self._ensure()
        pending: dict[Future, str] = {}
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.workers * 2:
                if before_each is not None and not before_each():
                    exhausted = True
                    break
                try:
                    key, path = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(_encode_one, str(path))] = key
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                try:
                    result = fut.result()
                except Exception as exc:  # a crashed worker must not stop the run
                    result = Encoding(
                        Status.ERROR,
                        f"encoder process failed: {type(exc).__name__}: {exc}",
                        model=self.model_id,
                    )
                    if "BrokenProcessPool" in type(exc).__name__:
                        self.close()
                        pool = self._ensure()
                yield key, result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
