"""Encoding on a Ray cluster: Ray Data `map_batches` over an actor pool whose actors hold
the very encoder the local pool's workers hold (`registry.build`, `base.encode_file`), so
a content gets the same vectors wherever it is encoded.

The nodes read the images by path: the data root must be on storage every node mounts
at the same path. Results come back to the daemon as Arrow batches and the daemon alone
writes them (daemon/encode.py). Ray is imported on first use, never at import time: a
store that never names a cluster never pays for it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from daemon.config import ConfigError, Settings
from daemon.encoders import registry
from daemon.encoders.base import Encoder, Encoding, Face, encode_file
from store.vocab import Status

log = logging.getLogger("facelint.ray")

# Images per actor call, and per Arrow batch that comes back: small, so that results
# stream to the daemon as they finish and a stop (or a hot CPU) takes effect soon; a
# dlib encode is ~0.1-1 s an image, far above Ray's per-call overhead.
RAY_BATCH = 8
INSTALL_HINT = "pip install 'facelint[cluster]'"
# How long a first connection to the cluster's address may take before it counts as
# unreachable.
CONNECT_SECONDS = 5.0
# How long the pool's actors may take to start (a process, facelint's imports, the
# models) before the job fails as a cluster error, retried by a later run, rather than
# waiting forever on a node that cannot host one.
ACTOR_START_SECONDS = 120
# How daemon/common/imaging.py words an OSError on open (a permission, an I/O error).
CANNOT_READ = "cannot read file:"

# What an actor returns for a batch: one row per image, its faces nested. Vectors travel
# as float32, the store's own type, so nothing is rounded on the way.
RESULT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("status", pa.string()),
        ("message", pa.string()),
        ("model", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("whole_image", pa.bool_()),
        ("detected", pa.int32()),
        ("node", pa.string()),
        (
            "faces",
            pa.list_(
                pa.struct(
                    [
                        ("box", pa.list_(pa.int32())),
                        ("vector", pa.list_(pa.float32())),
                        ("det_score", pa.float64()),
                    ]
                )
            ),
        ),
    ]
)


class ClusterUnavailable(ConfigError):
    """The Ray cluster the settings name cannot be used now (not installed, unreachable,
    or failing): the message says which, and which setting named it."""


def cluster_address(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """The Ray cluster to encode on: the `ray_address` setting, else Ray's own
    RAY_ADDRESS; empty: encode in the local pool."""
    env = os.environ if env is None else env
    return settings.ray_address or env.get("RAY_ADDRESS", "").strip()


def _origin(settings: Settings) -> str:
    return "setting 'ray_address'" if settings.ray_address else "RAY_ADDRESS"


def host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of an address that names one (`host:6379`, `ray://host:10001`);
    None for the ones Ray resolves itself (`auto`, `local`)."""
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def connect(address: str, origin: str) -> bool:
    """Connect this process to the Ray cluster at `address` (named by `origin`, for the
    message) unless it is connected; returns whether this call connected it (then the
    caller lets go: ray.shutdown()). Unreachable: ClusterUnavailable, said at once."""
    import ray

    if ray.is_initialized():
        return False
    where = host_port(address)
    if where is not None:
        # Ray retries an unreachable GCS for minutes; one refused connection says it
        # at once.
        try:
            socket.create_connection(where, timeout=CONNECT_SECONDS).close()
        except OSError as exc:
            raise ClusterUnavailable(
                f"cannot reach the Ray cluster at {address!r} ({origin}): {exc.strerror or exc}"
            ) from exc
    # ray.init puts its own SIGTERM handler (sys.exit) in place of the caller's: the
    # daemon's clean stop on SIGTERM must stay the daemon's.
    main = threading.current_thread() is threading.main_thread()
    kept = signal.getsignal(signal.SIGTERM) if main else None
    try:
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
        )
    except Exception as exc:
        raise ClusterUnavailable(
            f"cannot reach the Ray cluster at {address!r} ({origin}): {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if main and kept is not None:
            signal.signal(signal.SIGTERM, kept)
    return True


def ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # a `ray` module entry without a spec: not an importable package
        return False


def to_arrow(keys: list[str], encodings: list[Encoding], node: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "key": key,
                "status": str(enc.status),
                "message": enc.message,
                "model": enc.model,
                "width": enc.width,
                "height": enc.height,
                "whole_image": enc.whole_image,
                "detected": enc.detected,
                "node": node,
                "faces": [
                    {
                        "box": [int(v) for v in f.box],
                        "vector": np.asarray(f.vector, np.float32),
                        "det_score": float(f.det_score),
                    }
                    for f in enc.faces
                ],
            }
            for key, enc in zip(keys, encodings, strict=True)
        ],
        schema=RESULT_SCHEMA,
    )


def from_arrow(table: pa.Table) -> Iterator[tuple[str, str, Encoding]]:
    """(key, node, Encoding) of each row of an actor's result."""
    for row in table.to_pylist():
        faces = [
            Face(
                tuple(f["box"]),  # type: ignore[arg-type]
                np.asarray(f["vector"], np.float32),
                f["det_score"],
            )
            for f in row["faces"]
        ]
        enc = Encoding(
            Status(row["status"]),
            row["message"] or "",
            row["model"] or "",
            row["width"],
            row["height"],
            row["whole_image"],
            row["detected"],
            faces,
        )
        yield row["key"], row["node"], enc


class EncodeActor:
    """One Ray actor: the local pool's worker, as a Ray Data callable class. Its encoder
    is built once, on the node, with one thread (the pool spreads actors over cores)."""

    def __init__(self, settings: Settings) -> None:
        import ray

        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.encoder: Encoder = registry.build(settings, threads=1)
        self.max_pixels = settings.max_pixels
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: pa.Table) -> pa.Table:
        keys = batch.column("key").to_pylist()
        paths = batch.column("path").to_pylist()
        encodings = [encode_file(self.encoder, Path(p), self.max_pixels) for p in paths]
        return to_arrow(keys, encodings, self.node)


class RayEncoderPool:
    """Encodes on a Ray cluster what EncoderPool encodes locally, with the same interface:
    `encode()` yields (key, Encoding) as results come back. Connects on first use and
    stays connected until close()."""

    def __init__(self, settings: Settings, address: str | None = None, workers: int | None = None):
        registry.check(settings)  # a wrong model setting fails here, not on every node
        self._settings = settings
        self.address = address or cluster_address(settings)
        self._origin = _origin(settings)
        if not ray_installed():
            raise ClusterUnavailable(
                f"{self._origin} names a Ray cluster ({self.address}) to encode on, but Ray "
                f"is not installed: {INSTALL_HINT}, or unset it to encode locally"
            )
        self.model_id = registry.model_id(settings)
        self._chosen = settings.workers if workers is None else workers
        self.workers = self._chosen
        self._connected_here = False
        # Results per Ray node id over this pool's life: how the work was spread.
        self.nodes: Counter[str] = Counter()

    def _connect(self) -> None:
        if connect(self.address, self._origin):
            self._connected_here = True

    def _actors(self, ray: Any, blocks: int) -> int:
        # No more actors than the cluster has CPUs free: the job waits for its whole pool
        # (ACTOR_START_SECONDS), and an actor other work keeps from starting would fail
        # every run. No more than blocks: each one loads its models (~110 MB).
        free = int(ray.available_resources().get("CPU", 0))
        return max(1, min(self._chosen or free, free, blocks))

    def encode_batches(
        self,
        items: Iterable[tuple[str, Path]],
        before_each: Callable[[], bool] | None = None,
    ) -> Iterator[list[tuple[str, Encoding]]]:
        """Yield the results of each Arrow batch the cluster returns, as it returns them.
        `before_each()` runs before the job starts and between batches; returning False
        stops it (what was not returned stays to be encoded by a later run)."""
        jobs = list(items)
        if not jobs or (before_each is not None and not before_each()):
            return
        self._connect()
        paths = dict(jobs)
        stream = self._job(jobs)
        while True:
            try:
                batch = next(stream)
            except StopIteration:
                return
            except ClusterUnavailable:
                raise
            except Exception as exc:
                raise ClusterUnavailable(
                    f"encoding on the Ray cluster at {self.address!r} ({self._origin}) "
                    f"failed: {type(exc).__name__}: {exc}; every node needs facelint and "
                    f"its models installed ({INSTALL_HINT})"
                ) from exc
            out = []
            for key, node, enc in from_arrow(batch):
                self.nodes[node] += 1
                out.append((key, self._checked(enc, paths[key], node)))
            yield out
            if before_each is not None and not before_each():
                return

    def _job(self, jobs: list[tuple[str, Path]]) -> Iterator[pa.Table]:
        """The Ray Data job over `jobs`: its result batches, as the actors finish them."""
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        # Blocks go out once the whole pool is up: Ray hands them to the first actor
        # that is, and one that starts a few seconds late found its share taken (seen:
        # one node encoding all 24 images of a two-node test while the other loaded).
        context.wait_for_min_actors_s = ACTOR_START_SECONDS
        # Absolute, not resolved: a root reached through a link must be found by the same
        # name on every node.
        table = pa.table(
            {
                "key": pa.array([k for k, _ in jobs], pa.string()),
                "path": pa.array([os.path.abspath(p) for _, p in jobs], pa.string()),
            }
        )
        # One block per actor call, so that every actor gets its share from the start.
        blocks = [table.slice(i, RAY_BATCH) for i in range(0, len(jobs), RAY_BATCH)]
        self.workers = self._actors(ray, len(blocks))
        results = ray.data.from_arrow(blocks).map_batches(
            EncodeActor,
            fn_constructor_kwargs={"settings": self._settings},
            batch_size=RAY_BATCH,
            batch_format="pyarrow",
            # One block at a time per actor: Ray's default of two, and its preference for
            # the node that holds a block (the daemon's: blocks are only paths here), let
            # one actor queue the next block while another sits idle.
            compute=ray.data.ActorPoolStrategy(size=self.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=1,
        )
        yield from results.iter_batches(batch_size=None, batch_format="pyarrow")

    def _checked(self, enc: Encoding, path: Path, node: str) -> Encoding:
        if enc.model != self.model_id:
            raise ClusterUnavailable(
                f"Ray node {node} encodes with model {enc.model!r}, this daemon's model is "
                f"{self.model_id!r}: install the same facelint and settings on every node"
            )
        # Here but not there: the node does not see the daemon's storage (or not as the
        # daemon's user). An error, which later runs retry, not a vanished file (skipped)
        # or an unreadable one (final for that content).
        not_there = enc.status == Status.MISSING and os.path.exists(path)
        refused = (
            enc.status == Status.UNREADABLE
            and enc.message.startswith(CANNOT_READ)
            and os.access(path, os.R_OK)
        )
        if not_there or refused:
            return Encoding(
                Status.ERROR,
                f"Ray node {node} cannot read {os.path.abspath(path)} ({enc.message}): the "
                "data root must be on storage every node mounts at the same path, readable "
                "by the Ray workers' user",
                model=enc.model,
            )
        return enc

    def encode(
        self,
        items: Iterable[tuple[str, Path]],
        before_each: Callable[[], bool] | None = None,
    ) -> Iterator[tuple[str, Encoding]]:
        """EncoderPool's interface: (key, Encoding) as results come back."""
        for batch in self.encode_batches(items, before_each):
            yield from batch

    def pids(self) -> list[int]:
        """No local worker processes: the actors live on the cluster's nodes."""
        return []

    def close(self) -> None:
        if self._connected_here:
            import ray

            ray.shutdown()
            self._connected_here = False
