"""Daemon latency and memory with 57,637 embeddings already in the store.

Builds a tree of 57,637 small placeholder files in 2,000 class folders whose content
hashes already have (synthetic) embeddings in the store, so the daemon starts on a store
of realistic size without encoding them. Then real faces are written into the tree, one
at a time, and we time each from the file's close until the daemon has published it
(status file: idle, image counted, which happens after the batch's transaction commits).
The daemon's own figure per batch (from its log) and the encode time are reported beside.

Usage: python benchmarks/bench_daemon.py [--images 57637] [--classes 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from synthetic_store import insert_faces  # noqa: E402

from daemon.config import Settings  # noqa: E402
from daemon.encoders import registry  # noqa: E402
from daemon.pipeline import Pipeline  # noqa: E402
from store.connection import open_store  # noqa: E402

DEV = REPO / "tests" / "faces"  # the dev faces; --faces-dir takes another folder


def build_tree(root: Path, db: Path, n: int, classes: int, compare: bool = True) -> float:
    started = time.monotonic()
    rng = np.random.default_rng(0)
    cls = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, 128)).astype(np.float32)
    vec = centres[cls] + 0.6 * rng.standard_normal((n, 128)).astype(np.float32)
    rows = {"path": [], "class": [], "size": [], "mtime_ns": [], "hash": []}
    for i in range(n):
        klass = f"person_{cls[i]:04d}"
        folder = root / klass
        folder.mkdir(parents=True, exist_ok=True)
        data = f"placeholder {i}".encode()
        path = folder / f"img_{i:06d}.png"
        path.write_bytes(data)
        st = path.stat()
        rows["path"].append(f"{klass}/img_{i:06d}.png")
        rows["class"].append(klass)
        rows["size"].append(st.st_size)
        rows["mtime_ns"].append(st.st_mtime_ns)
        rows["hash"].append(hashlib.blake2b(data, digest_size=16).hexdigest())
    model = registry.model_id(Settings())
    files = pa.table(rows)
    with open_store(db) as con:
        insert_faces(con, files, vec, model)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", [model])
    if not compare:
        return time.monotonic() - started
    # One full compare, as the first scan of such a tree would do.
    pipeline = Pipeline(Settings(root=root, db=db))
    try:
        stats = pipeline.run()
    finally:
        pipeline.close()
    print(
        f"setup: {n} files, {classes} classes, {stats.pairs} pairs, "
        f"first full compare + reconcile {stats.seconds:.1f} s"
    )
    return time.monotonic() - started


def status(db: Path) -> dict:
    try:
        return json.loads(Path(str(db) + ".status.json").read_text())
    except (OSError, ValueError):
        return {}


def tree_rss(pid: int) -> tuple[float, float]:
    proc = psutil.Process(pid)
    main = proc.memory_info().rss
    children = sum(c.memory_info().rss for c in proc.children(recursive=True))
    return main / 2**20, children / 2**20


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=57_637)
    ap.add_argument("--classes", type=int, default=2_000)
    ap.add_argument("--faces", type=int, default=6, help="faces written one by one")
    ap.add_argument("--faces-dir", type=Path, default=DEV, help="folder of <class>/<face>.png")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "daemon.txt")
    args = ap.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    say(
        f"# bench_daemon {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, python {platform.python_version()}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="facelint-bench-"))
    try:
        root, db = tmp / "data", tmp / "facelint.duckdb"
        setup = build_tree(root, db, args.images, args.classes)
        say(f"store: {args.images} embeddings in {args.classes} classes (setup {setup:.0f} s)")
        env = dict(
            os.environ,
            FACELINT_QUIET_SECONDS="1.0",
            FACELINT_CONFIG=str(tmp / "none"),
            PYTHONPATH=str(REPO),
        )
        log_path = tmp / "daemon.log"
        with log_path.open("w") as log:
            started = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "daemon.cli", "daemon", str(root), "--db", str(db)],
                cwd=tmp,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                while status(db).get("state") != "idle" or status(db).get("images") is None:
                    if proc.poll() is not None:
                        raise SystemExit(log_path.read_text())
                    time.sleep(0.05)
                say(
                    f"daemon start to idle (reconcile of {args.images} files): "
                    f"{time.monotonic() - started:.2f} s"
                )
                main_mb, child_mb = tree_rss(proc.pid)
                say(f"memory after start: daemon {main_mb:.0f} MiB (no encoder yet)")
                faces = sorted(args.faces_dir.glob("*/*.png"))[: args.faces + 1]
                latencies = []
                for i, face in enumerate(faces):
                    before = status(db).get("images", 0)
                    dest = root / "person_0000" / f"new_{i}_{face.name}"
                    shutil.copyfile(face, dest)  # one write and close: a Closed event
                    closed = time.monotonic()
                    while (
                        status(db).get("images") != before + 1 or status(db).get("state") != "idle"
                    ):
                        time.sleep(0.005)
                    latencies.append(time.monotonic() - closed)
                main_mb, child_mb = tree_rss(proc.pid)
                found = re.findall(
                    r"batch of \d+: .*\((\d+\.\d+) s; encode (\d+\.\d+) s, pairs queryable "
                    r"at (\d+\.\d+) s",
                    log_path.read_text(),
                )
                batch_seconds = [float(b) for b, _, _ in found]
                encode_seconds = [float(e) for _, e, _ in found]
                queryable = [float(q) for _, _, q in found]
                say(
                    f"first new face (starts the encoder pool): {latencies[0]:.2f} s "
                    f"close-to-queryable; the daemon's batch took {batch_seconds[0]:.2f} s"
                )
                warm = latencies[1:]
                say(
                    f"next {len(warm)} faces, close-to-queryable: median {np.median(warm):.2f} s, "
                    f"max {max(warm):.2f} s (includes the 0.3 s settle that batches bursts)"
                )
                say(
                    f"  the daemon's own batch time (detect, encode, compare, write, then the "
                    f"review queue): median {np.median(batch_seconds[1:]):.2f} s"
                )
                # The pairs commit before the queue is recomputed: that moment, from the
                # file's close, is the latency a query sees.
                to_pairs = [
                    lat - (b - q)
                    for lat, b, q in zip(warm, batch_seconds[1:], queryable[1:], strict=False)
                ]
                beyond = [t - e for t, e in zip(to_pairs, encode_seconds[1:], strict=False)]
                say(
                    f"  close-to-pairs-queryable: median {np.median(to_pairs):.2f} s, of which "
                    f"encoding {np.median(encode_seconds[1:]):.2f} s; beyond the encode: median "
                    f"{np.median(beyond):.2f} s, max {max(beyond):.2f} s (target < 1 s)"
                )
                say(
                    f"memory with {args.images} embeddings: daemon {main_mb:.0f} MiB, "
                    f"encoder workers {child_mb:.0f} MiB in all"
                )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
