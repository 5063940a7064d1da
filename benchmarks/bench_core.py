"""How fast the core pipeline is: encoding, all-pairs comparison, incremental compare,
the second scan of an unchanged tree, and the comparison's memory.

    python benchmarks/bench_core.py [--quick] [--out FILE] [--only SECTION ...]
                                    [--compare-module FILE]

1. encode       the real Pipeline over ~200 copies of tests/faces (--faces) (same pixels,
                different bytes, so every copy is encoded), workers=1 and 2: images/s
                wall (process-pool start included) and from RunStats.encode_seconds,
                cold and with a pool already started.
2. compare      compare.full_lists over 57,637 synthetic 128-d embeddings in 2,000
                classes (1 % planted cross-class near-copies) against the bare float32
                products of the same upper triangle (best of several tile shapes):
                seconds, GFLOP/s, ratio (target <= 1.5), a cProfile of where the rest
                goes. Two thresholds: "default", the raw cosine the pipeline's own
                calibration gives score 0.4 (~1.5 % of cross-class pairs pass), and
                "sparse" (only the planted copies pass).
3. incremental  what Pipeline._compare does for 1 and 64 changed rows: hub expansion,
                dirty_candidates, merge_lists (stored lists read from memory, untimed).
4. rescan       a second Pipeline.run() over an unchanged tree of ~2,000 files (and a
                quarter of it, for the per-file cost), extrapolated to 57,637 files.
5. memory       peak RSS (VmHWM) of full_lists at 57,637, in a child process per
                threshold so nothing else counts.

Figures go to stdout and, for a full run, to benchmarks/results/core.txt. `--quick`
shrinks every size for a smoke run; `--compare-module` times another compare.py (a
proposed change) in sections 2, 3 and 5 without touching daemon/compare.py.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import importlib.util
import inspect
import json
import os
import platform
import pstats
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon import calibration as calib  # noqa: E402
from daemon import compare as repo_compare  # noqa: E402
from daemon import inventory  # noqa: E402
from daemon.config import Settings  # noqa: E402
from daemon.encoders import registry  # noqa: E402
from daemon.encoders.base import Encoding, encode_file  # noqa: E402
from daemon.encoders.pool import EncoderPool  # noqa: E402
from daemon.pipeline import Pipeline, RunStats  # noqa: E402

DEV_FACES = REPO / "tests" / "faces"  # the dev faces; --faces takes another folder
DEFAULT_OUT = REPO / "benchmarks" / "results" / "core.txt"
SECTIONS = ("encode", "compare", "incremental", "rescan", "memory")
TARGET_RATIO = 1.5
# A second, high raw cosine threshold for the synthetic set: images of one class sit near
# 0.66-0.80 with each other and different classes near 0 (sd 0.09), so what passes across
# classes is only the planted near-copies and the class they were copied from. It shows
# the comparison's own cost when next to nothing is kept.
SPARSE_THRESHOLD = 0.6
DIM = 128
# Extra tile shapes for the bare-product reference: the figure to beat is the best the
# BLAS does on this machine, not only at the shape compare.py happens to use.
MATMUL_SHAPES = ((1024, 2048), (512, 4096), (2048, 1024), (1024, 4096), (2048, 2048))
EXTRAPOLATE_FILES = 57_637


@dataclass(frozen=True)
class Sizes:
    encode_images: int  # dev images used (0: all); quick picks the smallest
    encode_copies: int
    n: int
    classes: int
    k: int
    repeats: int
    rescan_files: int


FULL = Sizes(
    encode_images=0, encode_copies=3, n=57_637, classes=2_000, k=20, repeats=3, rescan_files=2_000
)
# A smoke run (tests/test_bench_smoke.py): every section and figure at the least work;
# most of its time is the six encoder-pool starts (each loads dlib's models).
QUICK = Sizes(
    encode_images=2, encode_copies=1, n=2_000, classes=100, k=20, repeats=1, rescan_files=80
)


# -- output -------------------------------------------------------------------------------


class Report:
    """Figures as aligned `name value unit note` lines, echoed as they come."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def section(self, title: str) -> None:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        self.line()
        self.line(f"== {title}  (load average {load})")

    def fig(self, name: str, value: float | int | str, unit: str = "", note: str = "") -> None:
        if isinstance(value, float):
            text = f"{value:.3f}" if abs(value) < 100 else f"{value:,.1f}"
        elif isinstance(value, int):
            text = f"{value:,}"
        else:
            text = value
        self.line(f"{name:<36} {text:>12}  {unit:<9} {note}".rstrip())


def best_of(times: list[float]) -> str:
    return f"best of {len(times)}" + (
        f", median {statistics.median(times):.3f} s" if len(times) > 1 else ""
    )


# -- machine --------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def blas_lines() -> list[str]:
    """Which BLAS numpy runs on and which kernel it picked at run time."""
    out: list[str] = []
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            out.append(
                f"threadpoolctl: {info.get('internal_api')} {info.get('version')}, "
                f"kernel {info.get('architecture')}, {info.get('num_threads')} threads, "
                f"{Path(str(info.get('filepath'))).name}"
            )
    except ImportError:
        out.extend(_openblas_by_ctypes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # show_config nags about pyyaml
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            out.append(
                f"numpy build: {blas.get('name')} {blas.get('version')} "
                f"({blas.get('openblas configuration', '').strip()})"
            )
        except Exception as exc:  # an older numpy without mode="dicts"
            out.append(f"numpy build: unknown ({exc})")
    return out


def _openblas_by_ctypes() -> list[str]:
    # What threadpoolctl would say, asked of the loaded library directly: the kernel is
    # chosen at load time (OPENBLAS_CORETYPE overrides the CPU's own), so only the running
    # library knows it.
    with contextlib.suppress(OSError):
        maps = Path("/proc/self/maps").read_text()
        for lib_path in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
            lib = ctypes.CDLL(lib_path)
            found: dict[str, str] = {}
            for what in ("get_corename", "get_config", "get_num_threads"):
                for prefix in ("scipy_openblas_", "openblas_"):
                    for suffix in ("64_", ""):
                        fn = getattr(lib, f"{prefix}{what}{suffix}", None)
                        if fn is not None and what not in found:
                            is_int = what == "get_num_threads"
                            fn.restype = ctypes.c_int if is_int else ctypes.c_char_p
                            value = fn()
                            found[what] = value.decode() if isinstance(value, bytes) else f"{value}"
            if found:
                return [
                    f"openblas (ctypes; threadpoolctl not installed): kernel "
                    f"{found.get('get_corename')}, {found.get('get_num_threads')} threads, "
                    f"{Path(lib_path).name}"
                ]
    return ["blas runtime: threadpoolctl not installed and no OpenBLAS found in the process"]


def header(quick: bool, compare_file: str) -> list[str]:
    import duckdb

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count() or 0
    env = " ".join(
        f"{k}={v}"
        for k, v in sorted(os.environ.items())
        if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))
    )
    return [
        f"facelint core benchmark{' (--quick)' if quick else ''}, "
        f"{datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"machine: {platform.machine()}, nproc {affinity}, {cpu_model()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, duckdb {duckdb.__version__}",
        *blas_lines(),
        f"environment: {env or '(no OPENBLAS_/OMP_/MKL_ variables)'}",
        f"compare module: {compare_file}",
    ]


# -- test data --------------------------------------------------------------------------------


def unique_bytes(data: bytes, tag: str) -> bytes:
    """The same image, pixel for pixel, in different bytes: its content hash differs, so the
    pipeline encodes it, and encoding it costs what the original costs."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        # A tEXt chunk right after IHDR: readers skip text chunks.
        end = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
        body = b"tEXt" + b"facelint-bench\x00" + tag.encode()
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        return data[:end] + chunk + data[end:]
    if data.startswith(b"\xff\xd8"):
        # A COM segment after the APPn segments (JFIF and EXIF stay where readers expect).
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
            pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        text = b"facelint-bench " + tag.encode()
        return data[:pos] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[pos:]
    return data + tag.encode()  # other formats: decoders ignore trailing bytes


def dev_images(faces: Path, limit: int) -> list[Path]:
    """The dev set's images (class folders only); `limit` > 0 keeps the smallest files."""
    if not faces.is_dir():
        raise SystemExit(f"dev faces not found at {faces} (--faces)")
    images = sorted(
        p
        for p in faces.glob("*/*")
        if p.is_file() and inventory.is_image_name(p.name, Settings().extensions)
    )
    if limit:
        images = sorted(images, key=lambda p: (p.stat().st_size, p))[:limit]
    return images


def build_tree(root: Path, sources: list[Path], count: int) -> dict[str, Path]:
    """`count` files under root: copy c of every source in folder `<class>_c<c>`.
    Returns each file's absolute path -> the dev image it was copied from."""
    made: dict[str, Path] = {}
    data = {src: src.read_bytes() for src in sources}
    copy = 0
    while len(made) < count:
        for src in sources:
            if len(made) >= count:
                break
            folder = root / f"{src.parent.name}_c{copy:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            dest = folder / src.name
            dest.write_bytes(unique_bytes(data[src], f"copy {copy}"))
            made[str(dest)] = src
        copy += 1
    return made


def synthetic(
    n: int, n_classes: int, d: int = DIM, copy_frac: float = 0.01, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit float32 embeddings in classes of uneven size (class centre + noise), with
    `copy_frac` of the images replaced by near-copies of an image in another class.
    Returns (unit, class codes, indices of the planted copies)."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 0.7, n_classes)
    sizes = np.maximum(2, np.round(weights / weights.sum() * n).astype(np.int64))
    while (excess := int(sizes.sum()) - n) != 0:
        # Trim (or pad) the biggest classes until the total is exact.
        order = np.argsort(-sizes)[: abs(excess)]
        sizes[order] -= np.sign(excess)
    codes = np.repeat(np.arange(n_classes), sizes)
    centres = rng.standard_normal((n_classes, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vec = centres[codes] + rng.standard_normal((n, d), dtype=np.float32) * np.float32(
        0.6 / np.sqrt(d)
    )
    perm = rng.permutation(n)
    n_copy = round(copy_frac * n)
    dst = perm[:n_copy]
    # Sources are never copies themselves, so every copy is near its source.
    src = perm[n_copy:][rng.integers(0, n - n_copy, n_copy)]
    other = codes[src] != codes[dst]
    dst, src = dst[other], src[other]
    vec[dst] = vec[src] + rng.standard_normal((len(dst), d), dtype=np.float32) * np.float32(
        0.05 / np.sqrt(d)
    )
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    return vec.astype(np.float32), codes, np.sort(dst)


def load_compare(path: str | None) -> ModuleType:
    if not path:
        return repo_compare
    spec = importlib.util.spec_from_file_location("bench_alt_compare", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- 1. encoding ----------------------------------------------------------------------------


def run_pipeline(settings: Settings, pool: Any = None) -> tuple[RunStats, float]:
    pipeline = Pipeline(settings, pool=pool)
    try:
        started = time.perf_counter()
        stats = pipeline.run()
        return stats, time.perf_counter() - started
    finally:
        pipeline.close()


def bench_encode(rep: Report, sizes: Sizes, faces: Path, tmp: Path) -> None:
    rep.section("1. encoding: the real Pipeline, dlib in a process pool")
    sources = dev_images(faces, sizes.encode_images)
    root = tmp / "encode" / "data"
    build_tree(root, sources, len(sources) * sizes.encode_copies)
    total = len(sources) * sizes.encode_copies
    rep.line(
        f"{total} files: {sizes.encode_copies} byte-distinct copies of {len(sources)} dev "
        f"images, copy c of class X in folder X_c<c>; every run uses a fresh store"
    )
    for workers in (1, 2):
        settings = Settings(
            root=root,
            db=tmp / "encode" / f"cold{workers}.duckdb",
            workers=workers,
            backend="numpy",
        )
        stats, wall = run_pipeline(settings)
        rep.fig(
            f"encode_w{workers}_images",
            stats.encoded,
            "images",
            f"{stats.failed} failed, {stats.no_face} no face",
        )
        rep.fig(
            f"encode_w{workers}_cold_wall_img_s",
            stats.encoded / wall,
            "img/s",
            f"whole run() {wall:.2f} s, pool start included",
        )
        rep.fig(
            f"encode_w{workers}_cold_encode_img_s",
            stats.encoded / stats.encode_seconds,
            "img/s",
            f"encode step {stats.encode_seconds:.2f} s, pool start included",
        )
        # Steady state: a pool whose workers have started and loaded dlib's models before
        # the run, as in the daemon, where the pool outlives each batch.
        pool = EncoderPool(settings, workers)
        try:
            started = time.perf_counter()
            for _ in pool.encode((str(i), sources[0]) for i in range(2 * workers)):
                pass
            start_s = time.perf_counter() - started
            warm = Settings(
                root=root,
                db=tmp / "encode" / f"warm{workers}.duckdb",
                workers=workers,
                backend="numpy",
            )
            stats, wall = run_pipeline(warm, pool)
        finally:
            pool.close()
        rep.fig(
            f"encode_w{workers}_pool_start_s",
            start_s,
            "s",
            f"spawn {workers} worker(s), load dlib models, encode {2 * workers} images",
        )
        rep.fig(
            f"encode_w{workers}_warm_img_s",
            stats.encoded / stats.encode_seconds,
            "img/s",
            f"encode step {stats.encode_seconds:.2f} s; whole run() {wall:.2f} s",
        )


# -- 2. all-pairs comparison ------------------------------------------------------------------


def default_tile(cmp: ModuleType) -> tuple[int, int]:
    params = inspect.signature(cmp.cross_class_candidates).parameters
    return int(params["tile_rows"].default), int(params["tile_cols"].default)


def matmul_pass(unit: np.ndarray, tile_rows: int, tile_cols: int) -> tuple[float, int]:
    """The upper triangle of unit·unitᵀ as full_lists tiles it (row block against every
    column from its own first row on, each tile a fresh array): (seconds, FLOP done)."""
    n = len(unit)
    flop = 0
    started = time.perf_counter()
    for r0 in range(0, n, tile_rows):
        q = unit[r0 : r0 + tile_rows]
        for c0 in range(r0, n, tile_cols):
            sims = q @ unit[c0 : c0 + tile_cols].T
            flop += 2 * sims.size * unit.shape[1]
    return time.perf_counter() - started, flop


def default_threshold(unit: np.ndarray, codes: np.ndarray) -> float:
    """The raw cosine the pipeline compares at for the default threshold on this data: the
    same calibration Pipeline._calibrate estimates for a fresh store, which lets about
    DEFAULT_FALSE_RATE of all cross-class pairs through."""
    return calib.estimate(unit, codes).cosine_for(Settings().threshold)


def profile_lines(
    cmp: ModuleType, unit: np.ndarray, codes: np.ndarray, threshold: float, k: int
) -> list[str]:
    """Where full_lists spends its time: cProfile's own time per function. Operators
    (`@`, `>=`, indexing) have no entry of their own: they count in the function that
    runs them, so cross_class_candidates' own time is products + threshold + gathers."""
    prof = cProfile.Profile()
    prof.enable()
    cmp.full_lists(np, unit, codes, threshold, k)
    prof.disable()
    stats = cast(dict[tuple[str, int, str], tuple[Any, ...]], prof_stats(prof))
    total = sum(v[2] for v in stats.values())
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])
    out = []
    for (file, _line, name), (_cc, calls, own, _cum, _callers) in rows[:8]:
        if own < 0.01 * total:
            break
        where = name if file == "~" else f"{Path(file).name}:{name}"
        out.append(f"  {own:7.3f} s  {100 * own / total:5.1f} %  {calls:6d} calls  {where}")
    return out


def prof_stats(prof: cProfile.Profile) -> Any:
    return pstats.Stats(prof).stats  # type: ignore[attr-defined]


def bench_compare(
    rep: Report,
    sizes: Sizes,
    cmp: ModuleType,
    unit: np.ndarray,
    codes: np.ndarray,
    planted: np.ndarray,
    thresholds: dict[str, float],
) -> tuple[Any, tuple[int, int]]:
    """Returns full_lists' result at the default threshold and the fastest product shape."""
    n, k = len(unit), sizes.k
    rep.section(f"2. all-pairs comparison: {n:,} x {DIM}-d float32, {sizes.classes:,} classes")
    cross = (n * n - int((np.bincount(codes) ** 2).sum())) // 2
    rep.line(
        f"synthetic: class centre + noise (same class ~0.66-0.80, other classes ~0 +- 0.09), "
        f"{len(planted)} images ({len(planted) / n:.1%}) near-copies of an image in another "
        f"class; {cross:,} cross-class pairs; k={k}; raw cosine thresholds: "
        + ", ".join(f"{name} {t:.4f}" for name, t in thresholds.items())
    )
    rep.line(
        "  default = the calibrated cosine of score 0.4 (as the pipeline computes it); "
        "sparse = only the planted copies and their classes pass"
    )
    tile = default_tile(cmp)
    shapes = list(dict.fromkeys([tile, *MATMUL_SHAPES]))
    full_times: dict[str, list[float]] = {name: [] for name in thresholds}
    mm_times: dict[tuple[int, int], list[float]] = {s: [] for s in shapes}
    mm_flop: dict[tuple[int, int], int] = {}
    lists: dict[str, Any] = {}
    # Interleaved repeats: the machine is shared, and a burst of other work then hits
    # both sides of the ratio alike; the best of each is the figure.
    for _ in range(sizes.repeats):
        for name, threshold in thresholds.items():
            started = time.perf_counter()
            lists[name] = cmp.full_lists(np, unit, codes, threshold, k)
            full_times[name].append(time.perf_counter() - started)
        for shape in shapes:
            seconds, mm_flop[shape] = matmul_pass(unit, *shape)
            mm_times[shape].append(seconds)
    nominal = n * (n - 1) * DIM  # n(n-1)/2 pairs, 2·d FLOP each
    best_shape = min(shapes, key=lambda s: min(mm_times[s]))
    mm_s = min(mm_times[best_shape])
    for shape in shapes:
        rep.fig(
            f"matmul_{shape[0]}x{shape[1]}_s",
            min(mm_times[shape]),
            "s",
            f"{mm_flop[shape] / min(mm_times[shape]) / 1e9:.0f} GFLOP/s executed "
            f"(diagonal tiles done whole); {best_of(mm_times[shape])}",
        )
    rep.fig("compare_matmul_best_s", mm_s, "s", f"best shape {best_shape[0]}x{best_shape[1]}")
    rep.fig(
        "compare_matmul_gflops",
        nominal / mm_s / 1e9,
        "GFLOP/s",
        f"{nominal:.3g} FLOP: all n(n-1)/2 pairs x 2d",
    )
    for name in thresholds:
        tag = "" if name == "default" else f"_{name}"
        got, full_s = lists[name], min(full_times[name])
        pairs = int(got.candidates.sum()) // 2
        rep.fig(
            f"compare_candidates{tag}",
            pairs,
            "pairs",
            f"cross-class pairs >= threshold, {pairs / cross:.2%} of them",
        )
        rep.fig(
            f"compare_list_entries{tag}",
            len(got.src),
            "entries",
            f"directed best-{k} entries kept; "
            f"{int((got.candidates > k).sum()):,} hubs over the cap",
        )
        rep.fig(
            f"compare_full_lists{tag}_s",
            full_s,
            "s",
            f"full_lists, tiles {tile[0]}x{tile[1]}; {best_of(full_times[name])}",
        )
        rep.fig(
            f"compare_full_lists{tag}_gflops",
            nominal / full_s / 1e9,
            "GFLOP/s",
            "same nominal FLOP",
        )
        ratio = full_s / mm_s
        rep.fig(
            f"compare_ratio{tag}",
            ratio,
            "x",
            f"full_lists / best product; {full_s / min(mm_times[tile]):.2f}x against its "
            f"own tile shape; target <= {TARGET_RATIO}: "
            f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'}",
        )
    rep.line("profile of one full_lists at the default threshold (cProfile own time):")
    for text in profile_lines(cmp, unit, codes, thresholds["default"], k):
        rep.line(text)
    return lists["default"], best_shape


def native_kernel_matmul(
    rep: Report, unit_file: Path, shape: tuple[int, int], repeats: int
) -> None:
    """An aside: the same best product with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset, so
    OpenBLAS picks its kernel from the CPU. The main figures keep the environment as is."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    if env == dict(os.environ):
        return
    result = child(["matmul", str(unit_file), str(shape[0]), str(shape[1]), str(repeats)], env)
    rep.fig(
        "aside_matmul_native_kernel_s",
        result["seconds"],
        "s",
        f"OPENBLAS_CORETYPE/L2_SIZE unset: kernel {result['kernel']}, "
        f"{shape[0]}x{shape[1]}, best of {repeats}",
    )


# -- 3. incremental -------------------------------------------------------------------------


def bench_incremental(
    rep: Report,
    sizes: Sizes,
    cmp: ModuleType,
    unit: np.ndarray,
    codes: np.ndarray,
    planted: np.ndarray,
    lists: Any,
    threshold: float,
) -> None:
    n, k = len(unit), sizes.k
    rep.section(
        f"3. incremental compare against {n:,} at the default threshold: dirty_candidates + "
        "merge_lists"
    )
    rng = np.random.default_rng(1)
    for count in (1, 64):
        # Some changed images are planted copies (hubs of another class), the rest random.
        with_hits = planted[: max(1, count // 8)]
        others = rng.choice(
            np.setdiff1d(np.arange(n), with_hits), count - len(with_hits), replace=False
        )
        changed = np.sort(np.concatenate([with_hits, others]))
        times: list[float] = []
        loading: list[float] = []
        result: Any = None
        for _ in range(max(5, sizes.repeats)):
            load_s = [0.0]

            def stored_lists(
                holding: np.ndarray, sources: np.ndarray, _load: list[float] = load_s
            ) -> tuple[np.ndarray, ...]:
                # What the pipeline reads from the store (SQL there): not the figure.
                started = time.perf_counter()
                keep = np.isin(
                    lists.src, np.concatenate([lists.src[np.isin(lists.dst, holding)], sources])
                )
                _load[0] += time.perf_counter() - started
                return lists.src[keep], lists.dst[keep], lists.cos[keep]

            started = time.perf_counter()
            result = incremental(
                cmp, unit, codes, threshold, k, changed, lists.candidates, stored_lists
            )
            times.append(time.perf_counter() - started - load_s[0])
            loading.append(load_s[0])
        merged, dirty, found = result
        rep.fig(
            f"incremental_{count}_s",
            min(times),
            "s",
            f"{len(dirty)} dirty rows after hub expansion, {found:,} candidates, "
            f"{len(merged.sources):,} lists rewritten; {best_of(times)}; "
            f"+{min(loading):.3f} s reading old lists in memory (SQL in the pipeline)",
        )


def incremental(
    cmp: ModuleType,
    unit: np.ndarray,
    codes: np.ndarray,
    threshold: float,
    k: int,
    changed: np.ndarray,
    candidates: np.ndarray,
    stored_lists: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]],
) -> tuple[Any, np.ndarray, int]:
    """(lists, dirty rows, their candidates) as Pipeline._compare gets them: the hub
    expansion, dirty_candidates and merge_lists."""
    n = len(unit)
    if hasattr(cmp, "incremental_lists"):
        # The pipeline's own entry point, so the figure follows the code.
        merged, dirty = cmp.incremental_lists(
            np, unit, codes, threshold, k, changed, candidates, stored_lists
        )
        found = merged.candidates[np.isin(merged.sources, dirty)]
        return merged, dirty, int(found.sum())
    # Older compare modules: the same steps, spelled out.
    h_src, _, _ = stored_lists(changed, np.empty(0, np.int64))
    # A clean image at its cap pointing at a changed one cannot refill its list from what
    # is stored: it is recomputed too.
    at_cap = np.unique(h_src[candidates[h_src] > k])
    dirty = np.unique(np.concatenate([changed, at_cap]))
    fwd, rev = cmp.dirty_candidates(np, unit, codes, threshold, k, dirty)
    old = stored_lists(dirty, np.unique(rev[0]))
    merged = cmp.merge_lists(n, k, dirty, fwd, rev, old, candidates)
    return merged, dirty, int(fwd.counts[dirty].sum())


# -- 4. second scan of an unchanged tree ------------------------------------------------------


class CannedPool:
    """Stands in for EncoderPool in the set-up scan only: each file gets the real encoding
    of the dev image it was copied from, so a 2,000-file store takes seconds rather than
    minutes of dlib. The timed second scan builds its own, real pool (and encodes nothing)."""

    def __init__(self, model_id: str, answers: dict[str, Encoding]):
        self.model_id = model_id
        self.answers = answers

    def encode(
        self, items: Iterable[tuple[str, Path]], before_each: Callable[[], bool] | None = None
    ) -> Iterator[tuple[str, Encoding]]:
        for key, path in items:
            yield key, self.answers[str(path)]

    def close(self) -> None:
        pass


def timed_phases(pipeline: Pipeline, phases: dict[str, float]) -> None:
    """Accumulate the wall time of each step of Pipeline.run() into `phases`: the scan
    step's detect and apply, the encode step, the refresh and the run's record."""
    import daemon.pipeline as pipeline_module

    def timed(name: str, step: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return step(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started

        return wrapper

    # The steps are module functions the pipeline calls through its own names: wrap them
    # there for this pipeline's run (restored when it ends), its methods on the instance.
    scan = pipeline_module.scan
    originals = (scan.detect, scan.apply, pipeline_module.encode)
    run = pipeline.run

    def run_timed(*args: Any, **kwargs: Any) -> Any:
        scan.detect, scan.apply = timed("detect", originals[0]), timed("apply", originals[1])
        pipeline_module.encode = timed("encode", originals[2])
        try:
            return run(*args, **kwargs)
        finally:
            scan.detect, scan.apply, pipeline_module.encode = originals

    pipeline.run = run_timed  # type: ignore[method-assign]
    for name in ("refresh", "_finish"):
        setattr(pipeline, name, timed(name.strip("_"), getattr(pipeline, name)))


def rescan_once(
    tmp: Path, sources: list[Path], encodings: dict[Path, Encoding], count: int, repeats: int
) -> dict[str, Any]:
    root, db = tmp / f"rescan{count}" / "data", tmp / f"rescan{count}" / "store.duckdb"
    made = build_tree(root, sources, count)
    settings = Settings(root=root, db=db, backend="numpy")
    canned = CannedPool(
        registry.model_id(settings),
        {path: encodings[src] for path, src in made.items()},
    )
    first = Pipeline(settings, pool=cast(EncoderPool, canned))
    first_phases: dict[str, float] = {}
    timed_phases(first, first_phases)
    started = time.perf_counter()
    stats = first.run()
    first_s = time.perf_counter() - started
    first.close()
    walk_times, times, phases, second = [], [], {}, stats
    for _ in range(repeats):
        started = time.perf_counter()
        list(inventory.walk(root, settings.extensions, settings.quarantine, []))
        walk_times.append(time.perf_counter() - started)
        pipeline = Pipeline(settings)
        run_phases: dict[str, float] = {}
        timed_phases(pipeline, run_phases)
        try:
            started = time.perf_counter()
            second = pipeline.run()
            times.append(time.perf_counter() - started)
        finally:
            pipeline.close()
        if times[-1] == min(times):
            phases = run_phases
    return {
        "files": count,
        "first_s": first_s,
        "first_phases": first_phases,
        "first_pairs": stats.pairs,
        "seconds": min(times),
        "times": times,
        "walk_s": min(walk_times),
        "phases": phases,
        "encoded": second.encoded,
        "compared": second.compared,
        "scanned": second.scanned,
    }


def bench_rescan(rep: Report, sizes: Sizes, faces: Path, tmp: Path) -> None:
    count = sizes.rescan_files
    rep.section(f"4. second scan of an unchanged tree of {count:,} files")
    sources = dev_images(faces, sizes.encode_images)
    defaults = Settings()
    encoder = registry.build(defaults)
    encodings = {src: encode_file(encoder, src, defaults.max_pixels) for src in sources}
    repeats = max(3, sizes.repeats)
    small = rescan_once(tmp, sources, encodings, max(count // 4, 1), repeats)
    big = rescan_once(tmp, sources, encodings, count, repeats)

    def fmt(phases: dict[str, float]) -> str:
        return ", ".join(f"{k.strip('_')} {v:.3f}" for k, v in phases.items())

    rep.line(
        f"set-up first scan ({count:,} new files, canned encodings, so hashing + store "
        f"writes + compare only): {big['first_s']:.2f} s "
        f"= {1e3 * big['first_s'] / count:.2f} ms/file [{fmt(big['first_phases'])}]; "
        f"{big['first_pairs']:,} pairs stored"
    )
    if big["encoded"] or big["compared"]:
        rep.line(f"UNEXPECTED: second scan encoded {big['encoded']}, compared {big['compared']}")
    rep.fig(
        "rescan_s",
        big["seconds"],
        "s",
        f"{big['scanned']:,} files, {big['encoded']} encoded; {best_of(big['times'])}",
    )
    rep.fig("rescan_files_s", count / big["seconds"], "files/s", "whole second run()")
    rep.line(f"  steps (s): {fmt(big['phases'])}; walk+stat alone {big['walk_s']:.3f} s")
    rep.fig(
        f"rescan_{small['files']}_s",
        small["seconds"],
        "s",
        f"a quarter of the tree; {best_of(small['times'])}",
    )
    per_file = (big["seconds"] - small["seconds"]) / (big["files"] - small["files"])
    fixed = big["seconds"] - per_file * big["files"]
    rep.fig(
        "rescan_us_per_file",
        1e6 * per_file,
        "us/file",
        f"slope between the two sizes; fixed part {fixed:.3f} s",
    )
    rep.fig(
        "rescan_extrapolated_s",
        fixed + per_file * EXTRAPOLATE_FILES,
        "s",
        f"a second scan of {EXTRAPOLATE_FILES:,} unchanged files (linear extrapolation)",
    )


# -- 5. memory ------------------------------------------------------------------------------


def child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). getrusage's ru_maxrss is not used for it: in a
    child started by fork+exec it keeps the parent's RSS at the fork, which here (dlib,
    the synthetic set) is bigger than the comparison's."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_child(args: list[str]) -> None:
    """Child modes; each prints one JSON line."""
    mode = args[0]
    if mode == "memory":
        unit = np.load(args[1])
        codes = np.load(args[2])
        k, threshold = int(args[3]), float(args[4])
        cmp = load_compare(args[5] if len(args) > 5 else None)
        loaded = rss_mb()
        # OpenBLAS maps its per-thread work buffers on the first product: measured apart,
        # so the comparison's own increase is not mistaken for them.
        rows, cols = default_tile(cmp)
        unit[:rows] @ unit[:cols].T
        warmed = rss_mb()
        started = time.perf_counter()
        cmp.full_lists(np, unit, codes, threshold, k)
        seconds = time.perf_counter() - started
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "loaded": loaded,
                    "warmed": warmed,
                    "peak": peak_rss_mb(),
                    "maxrss": maxrss,
                    "seconds": seconds,
                }
            )
        )
    elif mode == "matmul":
        unit = np.load(args[1])
        shape = (int(args[2]), int(args[3]))
        seconds = min(matmul_pass(unit, *shape)[0] for _ in range(int(args[4])))
        kernel = next((line for line in blas_lines() if "kernel" in line), "unknown")
        match = re.search(r"kernel (\S+),", kernel)
        print(json.dumps({"seconds": seconds, "kernel": match.group(1) if match else kernel}))
    else:
        raise SystemExit(f"unknown child mode {mode}")


def bench_memory(
    rep: Report,
    sizes: Sizes,
    unit_file: Path,
    codes_file: Path,
    thresholds: dict[str, float],
    compare_file: str | None,
) -> None:
    rep.section(f"5. memory of the comparison at {sizes.n:,} (a child process per threshold)")
    input_mb = np.load(unit_file, mmap_mode="r").nbytes / 2**20
    for name, threshold in thresholds.items():
        tag = "" if name == "default" else f"_{name}"
        args = ["memory", str(unit_file), str(codes_file), str(sizes.k), repr(threshold)]
        result = child(args + ([compare_file] if compare_file else []))
        rep.fig(
            f"memory_peak_rss{tag}_mb",
            result["peak"],
            "MiB",
            f"VmHWM after full_lists at the {name} threshold ({result['seconds']:.2f} s); "
            f"getrusage: {result['maxrss']:.0f}",
        )
        rep.fig(
            f"memory_compare_increase{tag}_mb",
            result["peak"] - result["warmed"],
            "MiB",
            f"peak over the RSS just before full_lists ({result['warmed']:.0f} MiB)",
        )
    rep.line(
        f"  before full_lists: {result['loaded']:.0f} MiB with the {input_mb:.0f} MiB input "
        f"loaded, +{result['warmed'] - result['loaded']:.0f} MiB for OpenBLAS's buffers "
        "(one product). Peaks are VmHWM: a child's getrusage ru_maxrss can keep the "
        "parent's RSS at the fork."
    )


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--out", type=Path, help=f"results file (a full run: {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--compare-module", help="time this compare.py instead of daemon's")
    parser.add_argument("--faces", type=Path, default=DEV_FACES, help="the dev faces folder")
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(args.child)
        return 0
    sizes = QUICK if args.quick else FULL
    only = set(args.only or SECTIONS)
    out = args.out
    if out is None and not (args.quick or args.only or args.compare_module):
        # Only a full run of the real code may stand as the recorded figures.
        out = DEFAULT_OUT
    cmp = load_compare(args.compare_module)
    rep = Report()
    for text in header(args.quick, str(Path(cast(str, cmp.__file__)).resolve())):
        rep.line(text)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facelint-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if "encode" in only:
            bench_encode(rep, sizes, args.faces, tmp)
        thresholds: dict[str, float] = {}
        if only & {"compare", "incremental", "memory"}:
            unit, codes, planted = synthetic(sizes.n, sizes.classes)
            unit_file = tmp / "unit.npy"
            np.save(unit_file, unit)
            np.save(tmp / "codes.npy", codes)
            thresholds = {"default": default_threshold(unit, codes), "sparse": SPARSE_THRESHOLD}
            lists = None
            if "compare" in only:
                lists, best_shape = bench_compare(rep, sizes, cmp, unit, codes, planted, thresholds)
                native_kernel_matmul(rep, unit_file, best_shape, sizes.repeats)
            if "incremental" in only:
                if lists is None:
                    lists = cmp.full_lists(np, unit, codes, thresholds["default"], sizes.k)
                bench_incremental(
                    rep, sizes, cmp, unit, codes, planted, lists, thresholds["default"]
                )
            del unit, codes, lists
        if "rescan" in only:
            bench_rescan(rep, sizes, args.faces, tmp)
        if "memory" in only:
            bench_memory(
                rep,
                sizes,
                tmp / "unit.npy",
                tmp / "codes.npy",
                thresholds,
                args.compare_module,
            )
    rep.line()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rep.line(f"total {time.perf_counter() - started:.1f} s; load average at the end {load}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(rep.lines) + "\n", encoding="utf-8")
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
