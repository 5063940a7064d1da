"""Encoding through Ray (`ray_address`) against the local pool, on this machine.

    python benchmarks/bench_ray.py [--lfw-sample N] [--out FILE]

The dev faces (tests/faces) and N (300) images spread over ../shared/faces/lfw-ac, dlib:

1. local    EncoderPool with 2 worker processes, its start included (a daemon's first
            batch pays it too).
2. ray      a local Ray cluster of two 1-CPU nodes (ray.cluster_utils.Cluster, as
            tests/test_ray.py): the cluster's start, then one RayEncoderPool job over the
            same images (Ray Data map_batches over an actor pool of 2; each job starts its
            actors and loads their models), then a job of 8 images, what one small daemon
            batch pays.

Each figure: wall seconds, CPU seconds of this process and every process under it (the
pool's workers; Ray's GCS, raylets and workers: the local cluster runs under this
process), and the peak of their summed RSS, sampled every 0.2 s. The vectors of both
are compared bit for bit. Figures go to stdout and, for a full run, to
benchmarks/results/ray.txt, with the load average beside each section.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_core import Report  # noqa: E402
from bench_encoders import images  # noqa: E402

from daemon.config import Settings  # noqa: E402
from daemon.encoders.base import Encoding  # noqa: E402
from daemon.encoders.pool import EncoderPool  # noqa: E402

DEV = REPO / "tests" / "faces"
# ../shared beside the checkout (or beside its worktree folder).
LFW = next(
    (
        p / "shared" / "faces" / "lfw-ac"
        for p in (REPO.parent, REPO.parent.parent)
        if (p / "shared" / "faces" / "lfw-ac").is_dir()
    ),
    REPO.parent / "shared" / "faces" / "lfw-ac",
)
DEFAULT_OUT = REPO / "benchmarks" / "results" / "ray.txt"
WORKERS = 2
SAMPLE_SECONDS = 0.2
SMALL_JOB = 8
# As tests/test_ray.py: no usage report, every node on the loopback address.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    # Last CPU seconds seen per process (a process gone keeps its last sample; one that
    # lives less than SAMPLE_SECONDS is missed).
    cpu: dict[int, float] = field(default_factory=dict)


def _tree() -> list[psutil.Process]:
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def _sample(usage: Usage, base: dict[int, float]) -> None:
    rss = 0
    for proc in _tree():
        try:
            with proc.oneshot():
                t = proc.cpu_times()
                # Its own time only: a reaped child's is its last sample already (and would
                # count twice through the parent's children_* times).
                used = t.user + t.system
                rss += proc.memory_info().rss
        except psutil.Error:
            continue
        usage.cpu[proc.pid] = used - base.get(proc.pid, 0.0)
    usage.peak_rss_mb = max(usage.peak_rss_mb, rss / 2**20)


@contextmanager
def measured() -> Iterator[Usage]:
    """Wall time, CPU seconds and peak RSS of this process tree while the block runs."""
    usage = Usage()
    base: dict[int, float] = {}
    _sample(Usage(), {})
    for proc in _tree():
        try:
            t = proc.cpu_times()
            base[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    stop = threading.Event()

    def sampler() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            _sample(usage, base)

    thread = threading.Thread(target=sampler, daemon=True)
    started = time.perf_counter()
    thread.start()
    try:
        yield usage
    finally:
        usage.wall_s = time.perf_counter() - started
        stop.set()
        thread.join()
        _sample(usage, base)
        usage.cpu_s = sum(max(0.0, v) for v in usage.cpu.values())


def run_local(jobs: list[tuple[str, Path]]) -> tuple[Usage, dict[str, Encoding]]:
    with measured() as usage:
        pool = EncoderPool(Settings(), WORKERS)
        try:
            out = dict(pool.encode(jobs))
        finally:
            pool.close()
    return usage, out


def run_ray(
    jobs: list[tuple[str, Path]],
) -> tuple[Usage, Usage, Usage, dict[str, Encoding], Any]:
    os.environ.update(RAY_ENV)
    import ray
    from ray.cluster_utils import Cluster

    from daemon.encoders.ray_pool import RayEncoderPool

    with measured() as start:
        cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
    try:
        pool = RayEncoderPool(Settings(ray_address=cluster.address), workers=WORKERS)
        try:
            with measured() as usage:
                out = dict(pool.encode(jobs))
            nodes = dict(pool.nodes)
            # What a daemon's event batch pays: one batch of images, a job of its own
            # (its actors started and their models loaded again).
            with measured() as small:
                list(pool.encode(jobs[:SMALL_JOB]))
        finally:
            pool.close()
        return start, usage, small, out, nodes
    finally:
        ray.shutdown()
        cluster.shutdown()


def _ray_version() -> str:
    from importlib.metadata import version

    return version("ray")


def identical(a: Encoding, b: Encoding) -> bool:
    return (
        a.status == b.status
        and len(a.faces) == len(b.faces)
        and all(
            tuple(x.box) == tuple(y.box)
            and np.array_equal(np.asarray(x.vector, np.float32), np.asarray(y.vector, np.float32))
            for x, y in zip(a.faces, b.faces, strict=True)
        )
    )


def figures(rep: Report, name: str, usage: Usage, n: int, note: str = "") -> None:
    rep.fig(f"{name}_wall_s", usage.wall_s, "s", f"{n} images, {n / usage.wall_s:.1f} img/s{note}")
    rep.fig(f"{name}_cpu_s", usage.cpu_s, "CPU s", f"{n / usage.cpu_s:.1f} img per CPU second")
    rep.fig(f"{name}_peak_rss_mb", usage.peak_rss_mb, "MB", "this process and all under it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=LFW)
    parser.add_argument("--lfw-sample", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.lfw.is_dir():
        parser.error(f"{args.lfw}: no such folder (--lfw names the LFW A-C faces)")
    dev, lfw = images(DEV, 0), images(args.lfw, args.lfw_sample)
    files = dev + lfw
    jobs = [(str(i), f) for i, f in enumerate(files)]
    rep = Report()
    rep.line(f"facelint Ray encoding benchmark, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    memory = psutil.virtual_memory().total / 2**30
    rep.line(
        f"machine: nproc {len(os.sched_getaffinity(0))}, {memory:.0f} GiB, ray "
        f"{_ray_version()}; shared with other engineers' builds and tests: the load "
        "average at each section says how busy it was"
    )
    rep.line(
        "note: on a shared machine a job's wall time follows everyone's load (and how many "
        "processes it runs); the CPU seconds compare the two"
    )
    rep.line(
        f"images: {len(files)} ({len(dev)} dev faces of tests/faces and {len(lfw)} spread "
        f"over {args.lfw}), dlib"
    )
    rep.section(f"1. local pool, {WORKERS} worker processes, start included")
    local_usage, local = run_local(jobs)
    figures(rep, "local", local_usage, len(jobs))

    rep.section("2. Ray: a local cluster of two 1-CPU nodes, one job, an actor pool of 2")
    start, ray_usage, small, through_ray, nodes = run_ray(jobs)
    rep.fig("ray_cluster_start_s", start.wall_s, "s", f"{start.cpu_s:.1f} CPU s")
    figures(
        rep,
        "ray",
        ray_usage,
        len(jobs),
        f"; actors' start included; per node: {sorted(nodes.values())}",
    )
    rep.fig(
        "ray_small_job_wall_s",
        small.wall_s,
        "s",
        f"a job of {SMALL_JOB} images on the running cluster, its actors' start included; "
        f"{small.cpu_s:.1f} CPU s",
    )
    same = sum(identical(local[k], through_ray[k]) for k in local)
    rep.fig("ray_identical_encodings", f"{same}/{len(local)}", "", "status, boxes, vectors")
    rep.fig("ray_vs_local_wall", ray_usage.wall_s / local_usage.wall_s, "x", "Ray's / the pool's")
    rep.fig("ray_vs_local_cpu", ray_usage.cpu_s / local_usage.cpu_s, "x", "Ray's / the pool's")
    rep.fig(
        "ray_vs_local_rss",
        ray_usage.peak_rss_mb / local_usage.peak_rss_mb,
        "x",
        "Ray's / the pool's peak RSS",
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rep.line(f"load average at the end: {load}")
    out = args.out or (DEFAULT_OUT if args.lfw_sample == 300 and args.lfw == LFW else None)
    if out is not None:
        out.write_text("\n".join(rep.lines) + "\n", encoding="utf-8")
        print(f"written to {out}")
    return 0 if same == len(local) else 1


if __name__ == "__main__":
    sys.exit(main())
