"""The comparison step at scale: read → compute → write with 57,637 embeddings.

    python benchmarks/bench_refresh.py [--images 57637] [--classes 2000] [--out FILE]

Builds the synthetic store of bench_daemon.py (57,637 placeholder files in 2,000 class
folders, 128-d embeddings), then times Pipeline.run(): the first full comparison, and an
incremental one after 1 and after 64 files change class. For each: seconds reading the
snapshot, computing (faces, calibration, lists, suggestions; the suggestion step on its
own), writing, and the longest time any write transaction held the store — what a
dashboard or a user's SQL may wait (target < 0.5 s). Pairs are written (queryable) before
the suggestions are computed; the suggestions follow in a second short transaction.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_daemon import build_tree  # noqa: E402

from daemon.config import Settings  # noqa: E402
from daemon.pipeline import Pipeline, RunStats  # noqa: E402


def line(title: str, stats: RunStats, longest: float) -> str:
    return (
        f"{title:<34} total {stats.seconds:6.2f} s | read {stats.read_seconds:5.2f} "
        f"compute {stats.compute_seconds:5.2f} write {stats.write_seconds:5.2f} (pairs "
        f"queryable), then suggestions {stats.suggest_seconds:5.2f} | longest write-lock "
        f"hold {longest:5.3f} s | "
        f"{stats.pairs} pairs, {stats.suggestions} suggestions, "
        f"{'full' if stats.full_compare else 'incremental'} ({stats.compared} compared)"
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=57_637)
    ap.add_argument("--classes", type=int, default=2_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "refresh.txt")
    args = ap.parse_args()
    out = [
        f"# bench_refresh {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    ]
    tmp = Path(tempfile.mkdtemp(prefix="facelint-refresh-"))
    try:
        root, db = tmp / "data", tmp / "facelint.duckdb"
        build_tree(root, db, args.images, args.classes, compare=False)
        settings = Settings(root=root, db=db, backend="numpy")
        pipeline = Pipeline(settings)
        try:
            stats = pipeline.run()
            out.append(line(f"first run, {args.images} images", stats, pipeline.longest_write))
            for moved in (1, 64):
                pipeline.longest_write = 0.0
                files = sorted((root / "person_0000").iterdir())[:moved]
                target = root / "person_0001"
                for f in files:
                    f.rename(target / f"moved_{f.name}")
                stats = pipeline.run()
                out.append(line(f"{moved} file(s) change folder", stats, pipeline.longest_write))
        finally:
            pipeline.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(out)
    print(text)
    args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
