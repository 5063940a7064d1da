"""Encoding in worker processes: dlib holds the GIL for most of its work, so threads
would not use a second core."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

from daemon.encoder import Encoding, encode_file, make_encoder, model_id_for

_worker_encoder = None
_worker_max_pixels = 0


def _init_worker(options: dict) -> None:
    global _worker_encoder, _worker_max_pixels
    # One BLAS thread per worker: the pool already uses every core.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_max_pixels = options.pop("max_pixels")
    _worker_encoder = make_encoder(**options)


def _encode_one(path: str) -> Encoding:
    assert _worker_encoder is not None
    return encode_file(_worker_encoder, Path(path), _worker_max_pixels)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


class EncoderPool:
    """A process pool of encoders, started on first use and kept until close()."""

    def __init__(
        self,
        num_jitters: int = 1,
        detector: str = "auto",
        detect_max_side: int = 1024,
        onnx_model: str = "",
        max_pixels: int = 60_000_000,
        workers: int = 0,
    ):
        self._options = {
            "num_jitters": num_jitters,
            "detector": detector,
            "detect_max_side": detect_max_side,
            "onnx_model": onnx_model,
            "max_pixels": max_pixels,
        }
        self.workers = workers or cpu_count()
        self.model_id = model_id_for(num_jitters, onnx_model)
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
                initargs=(dict(self._options),),
            )
        return self._pool

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
                        "error",
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
