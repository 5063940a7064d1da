"""benchmarks/bench_core.py --quick runs end to end and prints every figure it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks" / "bench_core.py"

# One figure of each section; their names are what benchmarks/results/core.txt readers grep.
FIGURES = (
    "encode_w1_cold_wall_img_s",
    "encode_w1_warm_img_s",
    "encode_w2_cold_encode_img_s",
    "encode_w2_warm_img_s",
    "compare_candidates",
    "compare_full_lists_s",
    "compare_matmul_best_s",
    "compare_full_lists_gflops",
    "compare_ratio",
    "compare_ratio_sparse",
    "incremental_1_s",
    "incremental_64_s",
    "rescan_s",
    "rescan_files_s",
    "rescan_us_per_file",
    "memory_peak_rss_mb",
)


def test_bench_core_quick(tmp_path: Path) -> None:
    out = tmp_path / "core.txt"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the benchmark must not depend on the working directory
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = out.read_text(encoding="utf-8")
    for name in FIGURES:
        assert f"\n{name} " in proc.stdout, f"{name} missing from the output"
        assert f"\n{name} " in written, f"{name} missing from {out}"
    assert "machine:" in written and "numpy" in written
    assert "UNEXPECTED" not in written  # the second scan encoded or compared something


ENCODER_FIGURES = (
    "encode_dlib_dev_img_s",
    "encode_dlib_lfw_cpu_img_s",
    "encode_arcface_dev_img_s",
    "encode_arcface_lfw_img_s",
    "encode_arcface_lfw_cpu_img_s",
    "compare_full_lists_512d_s",
    "compare_full_lists_128d_s",
)


@pytest.mark.slow
def test_bench_encoders_quick(tmp_path: Path) -> None:
    from daemon.encoders import package

    if not package.available():
        pytest.skip(f"the ArcFace model is not installed ({package.INSTALL_HINT})")
    out = tmp_path / "encoders.txt"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_encoders.py"),
            "--quick",
            # The LFW slice stays outside the repository: the test faces stand in for it.
            "--lfw",
            str(REPO / "tests" / "faces"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    written = out.read_text(encoding="utf-8")
    for name in ENCODER_FIGURES:
        assert f"\n{name} " in written, f"{name} missing from {out}"
    failed = [int(n) for n in re.findall(r"(\d+) failed", written)]
    assert failed and not any(failed), "an encoder failed on a face the others read"
