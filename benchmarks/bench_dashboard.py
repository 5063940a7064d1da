"""How fast the dashboard's pairs page queries a store of 1,000,000 pairs.

    python benchmarks/bench_dashboard.py [--pairs 1000000] [--keep DIR]

Builds a synthetic store (200,000 files in 2,000 classes, one embedding row each, the
given number of cross-class pairs, and 20,000 "different" decisions on the best pairs so
the unreviewed list must look past them), then times what a page run does: open the store
read-only, query one page (store/review.py), count the matches, close. Figures go to
stdout and to benchmarks/results/dashboard.txt. The target is under 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from store import review  # noqa: E402
from store.connection import open_store  # noqa: E402
from store.review import Cursor, PairFilter  # noqa: E402

TARGET_SECONDS = 0.5
PER_CLASS = 100
DECIDED = 20_000
PAGE = 10
RUNS = 7
MODEL = "bench-model"


def build(db: Path, pairs: int) -> int:
    """The synthetic store; returns the number of files."""
    files = max(1000, pairs // 5)
    with open_store(db) as con:
        con.execute("INSERT INTO meta VALUES ('model', ?), ('max_pairs_per_image', '20')", [MODEL])
        con.execute(
            f"""INSERT INTO files
                SELECT i, 'person_' || lpad(((i - 1) // {PER_CLASS})::VARCHAR, 5, '0')
                          || '/img_' || i || '.png',
                       'person_' || lpad(((i - 1) // {PER_CLASS})::VARCHAR, 5, '0'),
                       10000 + i, i, md5(i::VARCHAR), now(), now(), false, 5
                FROM generate_series(1, {files}) t(i)"""
        )
        con.execute(
            """INSERT INTO embeddings
               SELECT hash, ?, 'ok', '', 1, 20, 20, 130, 130, false, 150, 150, NULL, now()
               FROM files""",
            [MODEL],
        )
        # Partner k classes further on (k = 1, 2, ...): distinct, cross-class pairs.
        con.execute(
            f"""INSERT INTO pair_rows
                SELECT least(a, b), greatest(a, b), s, s, now(), now() FROM (
                    SELECT (i % {files}) + 1 AS a,
                           ((i % {files}) + {PER_CLASS} * (1 + i // {files})) % {files} + 1 AS b,
                           0.4 + 0.6 * (hash(i) % 1000000) / 1000000.0 AS s
                    FROM generate_series(0, {pairs - 1}) t(i))"""
        )
        con.execute(
            f"""INSERT INTO decisions
                SELECT least(fa.hash, fb.hash), greatest(fa.hash, fb.hash), 'different', NULL,
                       'bench', now()
                FROM (SELECT * FROM pair_rows ORDER BY score DESC LIMIT {DECIDED}) p
                JOIN files fa ON fa.id = p.lo JOIN files fb ON fb.id = p.hi"""
        )
    return files


def deep_cursor(db: Path, rank: int) -> Cursor:
    """The keyset cursor a reviewer would hold after paging down to `rank`."""
    with duckdb.connect(str(db), read_only=True) as con:
        row = con.execute(
            "SELECT score, lo, hi FROM pair_rows ORDER BY score DESC, lo, hi LIMIT 1 OFFSET ?",
            [rank],
        ).fetchone()
    assert row is not None
    return Cursor(float(row[0]), int(row[1]), int(row[2]))


def timed(fn: Callable[[], object]) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), max(times), result


def page_run(db: Path, flt: PairFilter, after: Cursor | None) -> Callable[[], object]:
    """What one run of the pairs page asks of the store, open to close."""

    def run() -> object:
        with open_store(db, read_only=True, timeout=5) as con:
            page = review.pair_page(con, flt, PAGE + 1, after)
            total = review.count_pairs(con, flt)
            review.last_moves_from(con, [p.a.path for p in page] + [p.b.path for p in page])
        return len(page), total

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--keep", type=Path, help="build the store here and keep it")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "dashboard.txt")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="facelint-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "bench.duckdb"
        db.unlink(missing_ok=True)
        started = time.perf_counter()
        n_files = build(db, args.pairs)
        build_s = time.perf_counter() - started
        deep = deep_cursor(db, int(args.pairs * 0.9))
        some_class = "person_00123"
        cases = [
            ("first page, unreviewed", PairFilter(), None),
            ("deep page (90 %), unreviewed", PairFilter(), deep),
            ("first page, all states", PairFilter(state="all"), None),
            ("first page, class search", PairFilter(class_search=some_class), None),
            ("deep page, class search", PairFilter(class_search="person_001"), deep),
            ("first page, score 0.5-0.6", PairFilter(min_score=0.5, max_score=0.6), None),
            ("person page (exact class)", PairFilter(klass=some_class, state="all"), None),
        ]
        lines = [
            f"facelint dashboard benchmark, {time.strftime('%Y-%m-%d %H:%M')}",
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()}, duckdb {duckdb.__version__}",
            f"store: {args.pairs:,} pairs, {n_files:,} files in {n_files // PER_CLASS:,} "
            f"classes, {DECIDED:,} decisions on the best pairs; built in {build_s:.1f} s, "
            f"{db.stat().st_size / 1e6:.0f} MB",
            f"each figure: one page run (open read-only, page of {PAGE + 1}, count, close), "
            f"median and worst of {RUNS}",
            "",
        ]
        worst = 0.0
        for name, flt, after in cases:
            med, top, (rows, total) = timed(page_run(db, flt, after))  # type: ignore[misc]
            worst = max(worst, top)
            lines.append(
                f"{name:32s} median {med * 1000:7.1f} ms  worst {top * 1000:7.1f} ms"
                f"  ({rows} rows of {total:,})"
            )
        verdict = "PASS" if worst < TARGET_SECONDS else "FAIL"
        lines += [
            "",
            f"{verdict}: worst {worst * 1000:.0f} ms, target {TARGET_SECONDS * 1000:.0f} ms",
        ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
