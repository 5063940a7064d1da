"""What one open of the store costs: the process's shared DuckDB (an ATTACH) against an
instance of its own (a `duckdb.connect`, as every open was before), read-only and
read-write, on a store of the dev faces; and how many opens one daemon step makes.

    python benchmarks/bench_open.py [--opens 200] [--out FILE]

CPU milliseconds per open (process time, so another process's load moves it less than a
wall clock would), best and median of five rounds. Figures go to stdout and
benchmarks/results/open.txt (docs/design.md, "Opening the store").
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402

import store.connection as connection  # noqa: E402
from daemon.config import Settings  # noqa: E402
from daemon.pipeline import Pipeline  # noqa: E402
from store.connection import open_store  # noqa: E402

ROUNDS = 5


def per_open_ms(open_once: Callable[[], None], opens: int) -> tuple[float, float]:
    """(best, median) CPU ms of one open over ROUNDS rounds of `opens` opens."""
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(opens):
            open_once()
        rounds.append((time.process_time() - started) * 1000 / opens)
    return min(rounds), statistics.median(rounds)


def opens_in_a_step(root: Path, db: Path) -> int:
    """Opens of the store in one pipeline run that stores one new file (no encode: the
    file is a copy of one the store knows)."""
    counted = 0
    real = connection._attachments.open

    def counting(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
        nonlocal counted
        counted += 1
        return real(path, read_only)

    source = next(p for p in sorted(root.rglob("*.png")))
    shutil.copy2(source, source.with_name("copy_" + source.name))
    connection._attachments.open = counting  # type: ignore[method-assign]
    try:
        pipeline = Pipeline(Settings(root=root, db=db, workers=1))
        try:
            pipeline.run()
        finally:
            pipeline.close()
    finally:
        connection._attachments.open = real  # type: ignore[method-assign]
    return counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opens", type=int, default=200, help="opens per round")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/open.txt")
    args = parser.parse_args(argv)

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    say(f"facelint store-open benchmark, {time.strftime('%Y-%m-%dT%H:%M:%S%z')}")
    say(
        f"machine: {platform.machine()}, nproc {os.cpu_count()}, Python "
        f"{platform.python_version()}, duckdb {duckdb.__version__}; load average {load}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        root = base / "data"
        shutil.copytree(REPO / "tests" / "faces", root, ignore=shutil.ignore_patterns("*.md"))
        (root / "manifest.csv").unlink()
        db = base / "facelint.duckdb"
        pipeline = Pipeline(Settings(root=root, db=db, workers=1))
        try:
            stats = pipeline.run()
        finally:
            pipeline.close()
        say(f"store: the {stats.images} dev faces, {db.stat().st_size / 2**20:.1f} MiB")

        def read(own: bool) -> Callable[[], None]:
            def once() -> None:
                with open_store(db, read_only=True, own_instance=own) as con:
                    con.execute("SELECT count(*) FROM files").fetchall()

            return once

        def write(own: bool) -> Callable[[], None]:
            def once() -> None:
                with open_store(db, own_instance=own) as con:
                    con.execute("SELECT count(*) FROM files").fetchall()

            return once

        figures = {}
        for name, fn in (
            ("open_read_shared_ms", read(False)),
            ("open_read_own_instance_ms", read(True)),
            ("open_write_shared_ms", write(False)),
            ("open_write_own_instance_ms", write(True)),
        ):
            best, median = per_open_ms(fn, args.opens)
            figures[name] = best
            say(f"{name:<30} {best:8.2f}  CPU ms  median {median:.2f}; {args.opens} opens x 5")
        say(
            f"{'open_read_saving_x':<30} "
            f"{figures['open_read_own_instance_ms'] / figures['open_read_shared_ms']:8.1f}"
            "  x       own instance / shared, read-only"
        )
        say(
            f"{'open_write_saving_x':<30} "
            f"{figures['open_write_own_instance_ms'] / figures['open_write_shared_ms']:8.1f}"
            "  x       own instance / shared, read-write (a write open checks the schema)"
        )
        opens = opens_in_a_step(root, db)
        saved = opens * (figures["open_write_own_instance_ms"] - figures["open_write_shared_ms"])
        say(
            f"{'opens_per_new_file_run':<30} {opens:8d}  opens   one new file, no encode; "
            f"~{saved:.0f} CPU ms saved a run"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
