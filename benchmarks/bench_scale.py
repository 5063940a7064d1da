"""Past one machine: exact all-pairs against the folder index, on synthetic clustered faces.

    python benchmarks/bench_scale.py --n 100000 --d 128 [--no-exact] [--out FILE]
    python benchmarks/bench_scale.py --daemon --n 1000000 --folders 50000 [--out FILE]

One size per run, computed in a child process with one BLAS thread and timed in
CPU-seconds (`time.process_time`), so a shared machine does not skew the ratio; wall
seconds are printed beside them with the load.

The faces: N/20 people in families of five (look-alikes: the false pairs a threshold
lets through), one folder each, then planted mistakes as the product meets them: 1 % of
the people split under a second name, 0.5 % of the faces misfiled into another folder,
0.2 % near-copies filed elsewhere. The threshold is the product's own calibration
(daemon/calibration.py) at the default score. Exact: `compare.full_lists` over the
whole set; index: the folder index built and searched (`daemon/index/folders.py`),
candidates rescored exactly, through the same `full_lists`. Pair recall is the share of
exact's cross-folder pairs above the threshold the index finds; a planted mistake is
found when a pair that shows it is (a split: any pair across its two folders; a misfile:
a pair with its person's folder; a copy: the pair of the two). Pairs of two misfiled
faces of one person are counted apart, with and without the strays that cover them.
Incremental: 64 faces move to another folder; the exact rows against everyone, against
the index brought up to date and searched for those rows.

--daemon: a store of N synthetic faces (no image files: the vectors go straight in, as
an encoder would leave them), the daemon's first refresh, then one new face: the seconds
from its encoding written to its pairs queryable (the refresh beyond the encode), the
review queue step, and the daemon's memory against the vectors' own size.

The run ends with one line: `n=… d=… exact_cpu_s=… index_cpu_s=… ratio=…
pair_recall=… planted_found=…` (or, with --daemon, `n=… folders=… new_face_s=…`).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def synthetic(n: int, d: int, seed: int = 0):
    """(unit faces, folder names, person of each face, planted: dict of index arrays)."""
    import numpy as np

    from daemon.compare import normalise

    rng = np.random.default_rng(seed)
    people = max(2, n // 20)
    families = max(1, people // 5)
    fam = normalise(rng.standard_normal((families, d)).astype(np.float32))
    # Family members agree at ~1/(1 + 1.5²) ≈ 0.31; a face with its person at ~0.8.
    offsets = rng.standard_normal((people, d)).astype(np.float32) * (1.5 / np.sqrt(d))
    centres = normalise(fam[np.arange(people) % families] + offsets)
    who = np.sort(rng.integers(0, people, n))
    unit = np.empty((n, d), np.float32)
    for s in range(0, n, 65536):
        part = who[s : s + 65536]
        noise = rng.standard_normal((len(part), d)).astype(np.float32) * (0.75 / np.sqrt(d))
        unit[s : s + 65536] = normalise(centres[part] + noise)
    folder = who.copy()
    next_folder = people
    # Splits: a person's second half under a new name.
    split_people = rng.choice(people, max(1, people // 100), replace=False)
    splits = []
    for p in split_people:
        rows = np.flatnonzero(who == p)
        if len(rows) >= 2:
            folder[rows[len(rows) // 2 :]] = next_folder
            splits.append((p, next_folder))
            next_folder += 1
    # Misfiles: faces filed under another person's folder.
    misfiled = rng.choice(n, max(1, n // 200), replace=False)
    folder[misfiled] = (who[misfiled] + 1 + rng.integers(0, people - 1, len(misfiled))) % people
    # Near-copies: a face again, barely changed, in another folder.
    originals = rng.choice(np.setdiff1d(np.arange(n), misfiled), max(1, n // 500), replace=False)
    copies = normalise(
        unit[originals] + 0.01 * rng.standard_normal((len(originals), d)).astype(np.float32)
    )
    unit = np.concatenate([unit, copies])
    who = np.concatenate([who, who[originals]])
    copy_folder = (folder[originals] + 1 + rng.integers(0, people - 1, len(originals))) % people
    folder = np.concatenate([folder, copy_folder])
    names = [f"p{f:07d}" for f in folder.tolist()]
    planted = {
        "splits": np.array(splits, np.int64).reshape(-1, 2),
        "misfiled": misfiled,
        "copies": np.stack([originals, n + np.arange(len(originals))], 1),
    }
    return unit, names, who, folder, planted


def pair_keys(pairs, n: int):
    import numpy as np

    lo, hi = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    return np.unique(lo.astype(np.int64) * n + hi)


def found_planted(keys, n: int, who, folder, planted) -> tuple[int, int]:
    """(planted mistakes shown by some pair in `keys`, planted mistakes)."""
    import numpy as np

    i, j = keys // n, keys % n
    hit = 0
    total = 0
    pair_folders = set(
        (
            np.minimum(folder[i], folder[j]) * (folder.max() + 1) + np.maximum(folder[i], folder[j])
        ).tolist()
    )
    for a, b in planted["splits"].tolist():
        total += 1
        hit += (min(a, b) * (folder.max() + 1) + max(a, b)) in pair_folders
    mis = planted["misfiled"]
    is_mis = np.zeros(len(folder), bool)
    is_mis[mis] = True
    # A misfile is shown by a pair with a face in its person's own folder.
    shows = np.zeros(len(folder), bool)
    for x, y in ((i, j), (j, i)):
        sel = is_mis[x] & (folder[y] == who[x])
        shows[x[sel]] = True
    total += len(mis)
    hit += int(shows[mis].sum())
    cp = pair_keys(planted["copies"], n)
    total += len(cp)
    hit += int(np.isin(cp, keys).sum())
    return hit, total


def run_size(n: int, d: int, exact_too: bool) -> str:
    import numpy as np

    from daemon import calibration as calib
    from daemon import compare
    from daemon.index import folders
    from store.scores import DEFAULT_THRESHOLD

    lines = []
    unit, names, who, folder, planted = synthetic(n, d)
    n = len(unit)
    codes = np.unique(np.asarray(names), return_inverse=True)[1]
    cal = calib.estimate(unit, codes)
    t = cal.cosine_for(DEFAULT_THRESHOLD)
    ids = np.arange(n, dtype=np.int64)
    keys = [f"h{i}:0" for i in range(n)]
    lines.append(
        f"n={n} d={d} folders={len(set(names))} threshold_cos={t:.4f} nprobe={folders.NPROBE} "
        f"self_probe={folders.SELF_PROBE} "
        f"vectors_mb={unit.nbytes / 2**20:.0f}"
    )

    def recording(search, out):
        def wrapped(rows):
            for i, j, c in search(rows):
                out.append(np.stack([i, j], 1))
                yield i, j, c

        return wrapped

    exact_pairs: list = []
    exact_cpu = exact_wall = float("nan")
    if exact_too:
        c0, w0 = time.process_time(), time.perf_counter()
        exact_lists = compare.full_lists(
            np, unit, codes, t, 20, recording(compare.exact_search(np, unit, codes, t), exact_pairs)
        )
        exact_cpu, exact_wall = time.process_time() - c0, time.perf_counter() - w0
    index_pairs: list = []
    c0, w0 = time.process_time(), time.perf_counter()
    index = folders.FolderIndex(d).sync(unit, ids, names, keys, t)
    build_cpu = time.process_time() - c0

    def index_search(rows):
        return folders.candidates([index], np, unit, t, rows)

    index_lists = compare.full_lists(np, unit, codes, t, 20, recording(index_search, index_pairs))
    index_cpu, index_wall = time.process_time() - c0, time.perf_counter() - w0
    got = pair_keys(np.concatenate(index_pairs), n) if index_pairs else np.empty(0, np.int64)
    hit, total = found_planted(got, n, who, folder, planted)
    lines.append(
        f"index: build {build_cpu:.2f} cpu-s, full pass {index_cpu:.2f} cpu-s "
        f"({index_wall:.2f} wall-s), strays {index.strays.ntotal}, loose "
        f"{int(index._routing.loose.sum())}, planted found {hit}/{total}"
    )
    recall = float("nan")
    if exact_too:
        want = pair_keys(np.concatenate(exact_pairs), n) if exact_pairs else np.empty(0, np.int64)
        recall = float(np.isin(want, got).mean()) if len(want) else 1.0
        e_hit, e_total = found_planted(want, n, who, folder, planted)
        same_lists = _lists_equal(exact_lists, index_lists)
        # Pairs of two misfiled faces of one person: what folder routing alone misses.
        mis = np.zeros(n, bool)
        mis[planted["misfiled"]] = True
        wi, wj = want // n, want % n
        doubly = want[mis[wi] & mis[wj] & (who[wi] == who[wj])]
        index_no_strays = _without_strays(index, unit)
        lines.append(
            f"exact: full pass {exact_cpu:.2f} cpu-s ({exact_wall:.2f} wall-s), "
            f"{len(want)} pairs, planted found {e_hit}/{e_total}; index finds {recall:.4f} "
            f"of the pairs, sources with identical best-20 lists {same_lists:.4f}; "
            f"pairs of two misfiled faces {len(doubly)}: found "
            f"{int(np.isin(doubly, got).sum())}, without strays "
            f"{int(np.isin(doubly, index_no_strays).sum())}"
        )
    lines.append(_incremental(unit, names, ids, keys, codes, t, index, exact_too))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"peak_rss_mb={rss:.0f} (vectors {unit.nbytes / 2**20:.0f} MB)")
    ratio = exact_cpu / index_cpu if exact_too else float("nan")
    lines.append(
        f"n={n} d={d} exact_cpu_s={exact_cpu:.2f} index_cpu_s={index_cpu:.2f} "
        f"ratio={ratio:.1f} pair_recall={recall:.4f} planted_found={hit}/{total}"
    )
    return "\n".join(lines)


def _lists_equal(a, b) -> float:
    """The share of sources whose best-K lists hold the same destinations."""
    import numpy as np

    n = len(a.sources)
    ka = np.unique(a.src.astype(np.int64) * n + a.dst)
    kb = np.unique(b.src.astype(np.int64) * n + b.dst)
    differ = np.unique(np.setxor1d(ka, kb, assume_unique=True) // n)
    return 1.0 - len(differ) / max(n, 1)


def _without_strays(index, unit):
    import numpy as np

    from daemon.index import folders

    lists = index._local()
    saved = lists.strays
    try:
        lists.strays = folders._ivf(saved.d, saved.nlist)
        pairs = index.pairs(unit)
    finally:
        lists.strays = saved
    n = len(unit)
    return np.unique(pairs[:, 0].astype(np.int64) * n + pairs[:, 1]) if len(pairs) else pairs


def _incremental(unit, names, ids, keys, codes, t, index, exact_too) -> str:
    import numpy as np

    from daemon import compare
    from daemon.index import folders

    rng = np.random.default_rng(1)
    moved = np.sort(rng.choice(len(unit), 64, replace=False))
    names2 = list(names)
    for r in moved.tolist():
        names2[r] = names[(r + 1000) % len(names)]
    codes2 = np.unique(np.asarray(names2), return_inverse=True)[1]
    out = []
    if exact_too:
        c0 = time.process_time()
        compare.dirty_candidates(np, unit, codes2, t, 20, moved)
        out.append(f"exact {1000 * (time.process_time() - c0):.1f}")
    # The changed rows as the daemon knows them (its dirty files), not found by a scan.
    c0 = time.process_time()
    kept = index.sync(unit, ids, names2, keys, t, changed=moved)
    c1 = time.process_time()
    compare.dirty_candidates(
        np, unit, codes2, t, 20, moved, lambda rows: folders.candidates([kept], np, unit, t, rows)
    )
    c2 = time.process_time()
    # What the same check costs where the changed rows are not known: every row compared.
    kept.sync(unit, ids, names2, keys, t)
    c3 = time.process_time()
    out.append(
        f"index {1000 * (c2 - c0):.1f} (bring up to date {1000 * (c1 - c0):.1f}, "
        f"search {1000 * (c2 - c1):.1f}; finding the changed rows by comparing every row "
        f"instead {1000 * (c3 - c2):.1f})"
    )
    return "incremental, 64 faces change folder, cpu-ms: " + ", ".join(out)


# -- the daemon: one new face into a big store --------------------------------------------


def run_daemon(n: int, n_folders: int, keep: Path | None = None) -> str:
    import numpy as np
    import psutil
    import pyarrow as pa
    from synthetic_store import insert_faces

    from daemon.compare import normalise
    from daemon.config import Settings
    from daemon.encoders import registry
    from daemon.pipeline import Pipeline, RunStats
    from store import meta
    from store.connection import open_store

    d = 128
    lines = []
    tmp = Path(tempfile.mkdtemp(prefix="facelint-scale-"))
    root, db = tmp / "data", tmp / "facelint.duckdb"
    root.mkdir()
    rng = np.random.default_rng(0)
    centres = normalise(rng.standard_normal((n_folders, d)).astype(np.float32))
    model = registry.model_id(Settings())
    # --store: the store as its first refresh left it, kept for the next runs of this
    # size (building and first refreshing 1 M faces takes minutes); each run works on a
    # copy, so each starts from the same store.
    kept = keep / f"n{n}-f{n_folders}.duckdb" if keep is not None else None
    reuse = kept is not None and kept.exists()

    def insert(con, start: int, count: int, folder_of) -> None:
        cls = folder_of
        vec = normalise(
            centres[cls] + (0.75 / np.sqrt(d)) * rng.standard_normal((count, d)).astype(np.float32)
        )
        paths = [f"p{c:06d}/img_{start + i:08d}.png" for i, c in enumerate(cls.tolist())]
        hashes = [f"{start + i:032x}" for i in range(count)]
        files = pa.table(
            {
                "path": paths,
                "class": [p.split("/")[0] for p in paths],
                "size": pa.array(np.full(count, 100), pa.int64()),
                "mtime_ns": pa.array(np.full(count, 1), pa.int64()),
                "hash": hashes,
            }
        )
        insert_faces(con, files, vec, model)
        meta.bump_counter(con, "generation", 1)

    w0 = time.perf_counter()
    if reuse:
        assert kept is not None
        shutil.copyfile(kept, db)
        # The draws that built it, so that the new faces below are the same faces.
        for s in range(0, n, 200_000):
            count = min(200_000, n - s)
            rng.integers(0, n_folders, count)
            rng.standard_normal((count, d)).astype(np.float32)
        lines.append(f"store of {n} faces in {n_folders} folders reused from {kept}")
    else:
        with open_store(db) as con:
            for s in range(0, n, 200_000):
                count = min(200_000, n - s)
                insert(con, s, count, rng.integers(0, n_folders, count))
            con.execute("INSERT OR REPLACE INTO meta VALUES ('model', ?)", [model])
        lines.append(
            f"store of {n} faces in {n_folders} folders built in {time.perf_counter() - w0:.0f} s"
        )
    pipeline = Pipeline(Settings(root=root, db=db, backend="numpy"))
    proc = psutil.Process()
    try:
        first = RunStats(kind="refresh")
        c0, w0 = time.process_time(), time.perf_counter()
        pipeline.refresh(first)
        lines.append(
            f"{'start on the kept store' if reuse else 'first refresh'}: "
            f"{time.perf_counter() - w0:.1f} wall-s, "
            f"{time.process_time() - c0:.1f} cpu-s (read {first.read_seconds:.1f}, compute "
            f"{first.compute_seconds:.1f}, write {first.write_seconds:.1f}, queue step "
            f"{first.suggest_seconds:.1f}), {first.compared} compared, full {first.full_compare}"
        )
        if kept is not None and not reuse:
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db, kept)
        times = []
        for k in range(3):
            with open_store(db) as con:
                insert(con, n + k, 1, np.array([k]))
            stats = RunStats(kind="refresh")
            pipeline._run_started = w0 = time.perf_counter()
            c0 = time.process_time()
            pipeline.refresh(stats)
            times.append((stats.queryable_seconds, time.process_time() - c0, stats))
        best = min(times, key=lambda x: x[0])
        q, cpu, stats = best
        lines.append(f"refresh cpu-s {cpu:.2f}")
        rss = proc.memory_info().rss / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        vec_mb = n * d * 4 / 2**20
        lines.append(
            "one new face, beyond its encode (best of 3): queryable "
            f"{q:.2f} s (read {stats.read_seconds:.2f}, compute {stats.compute_seconds:.2f}, "
            f"write {stats.write_seconds:.2f}), queue step {stats.suggest_seconds:.2f} s; "
            f"all three: {', '.join(f'{t[0]:.2f}' for t in times)} s"
        )
        lines.append(
            f"daemon memory: rss {rss:.0f} MB now, peak {peak:.0f} MB; vectors {vec_mb:.0f} MB "
            f"(rss/vectors {rss / vec_mb:.2f}, peak/vectors {peak / vec_mb:.2f})"
        )
        lines.append(
            f"n={n} folders={n_folders} new_face_s={q:.2f} queue_s={stats.suggest_seconds:.2f} "
            f"first_queue_s={first.suggest_seconds:.2f} rss_mb={rss:.0f} peak_rss_mb={peak:.0f} "
            f"vectors_mb={vec_mb:.0f}"
        )
    finally:
        pipeline.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=25_000)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--no-exact", action="store_true", help="the index only (sizes exact can't)")
    ap.add_argument("--daemon", action="store_true", help="one new face into an N-face store")
    ap.add_argument("--folders", type=int, default=0, help="--daemon: folders (default N/20)")
    ap.add_argument("--nprobe", type=int, help="folders each face searches (index default)")
    ap.add_argument("--self-probe", type=int, help="folders nearest the face it searches")
    ap.add_argument(
        "--store",
        type=Path,
        help="--daemon: keep the first-refreshed store in this folder and reuse it next time",
    )
    ap.add_argument("--out", type=Path, help="append the run's lines to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(REPO))
        if args.nprobe:
            from daemon.index import folders

            folders.NPROBE = args.nprobe
        if args.self_probe:
            from daemon.index import folders

            folders.SELF_PROBE = args.self_probe
        if args.daemon:
            folders_n = args.folders or max(1, args.n // 20)
            print(run_daemon(args.n, folders_n, args.store), flush=True)
        else:
            print(run_size(args.n, args.d, not args.no_exact), flush=True)
        return 0
    env = dict(os.environ, **dict.fromkeys(THREAD_VARS, "1"))
    head = (
        f"# bench_scale {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start, one BLAS thread"
    )
    print(head, flush=True)
    w0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *sys.argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        return proc.returncode
    body = proc.stdout.rstrip("\n").split("\n")
    tail = f"wall {time.perf_counter() - w0:.0f} s, load {os.getloadavg()[0]:.1f} at end"
    text = "\n".join([head, *body[:-1], tail, body[-1]])
    print("\n".join([*body[:-1], tail, body[-1]]))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
