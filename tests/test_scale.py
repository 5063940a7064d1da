"""A refresh whose cost follows the change: the daemon's faces kept in memory between
refreshes (daemon/snapshot.py: FaceCache) read only the new vectors, and every snapshot
they give equals one read from scratch, bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from daemon.common.hashing import content_hash
from daemon.config import Settings
from daemon.pipeline import Pipeline
from daemon.snapshot import Snapshot, face_codes
from store import embeddings
from store.clock import utcnow
from store.vectors import normalise
from store.vocab import Status
from tests.conftest import copy_dev_faces

FIELDS = ("ids", "dirty", "candidates", "chosen", "width", "height")
FACE_FIELDS = ("face_start", "face_count", "face_index", "boxes")


def assert_same_faces(pipeline: Pipeline) -> None:
    """The pipeline's kept faces are what a fresh read of the store gives."""
    with pipeline.store.reading() as con:
        fresh = Snapshot.read(con, pipeline.model).faces
        snap = Snapshot.read(con, pipeline.model, pipeline._faces)
    kept = snap.faces
    assert snap.unit_faces is kept.vectors
    # The files' rows, kept and brought up to date from the rows a writer touched.
    with pipeline.store.reading() as con:
        whole = Snapshot.read(con, pipeline.model)
    for name in ("file_ids", "file_folders", "file_first_seen"):
        assert np.array_equal(getattr(snap, name), getattr(whole, name)), name
    for name in ("file_paths", "file_classes", "file_hashes"):
        assert getattr(snap, name) == getattr(whole, name), name
    assert snap.file_class_codes is not None and snap.class_names is not None
    assert [snap.class_names[c] for c in snap.file_class_codes] == whole.file_classes
    assert np.array_equal(face_codes(snap), face_codes(whole))
    assert np.array_equal(
        face_codes(whole), np.unique(np.asarray(whole.faces.classes), return_inverse=True)[1]
    )
    for name in FIELDS + FACE_FIELDS:
        assert np.array_equal(getattr(kept, name), getattr(fresh, name)), name
    assert kept.classes == fresh.classes and kept.hashes == fresh.hashes
    # Bit for bit: the scores a kept daemon stores are a fresh daemon's.
    assert np.array_equal(kept.vectors, normalise(fresh.vectors))


def new_content(pipeline: Pipeline, like: Path, dest: Path, shift: float) -> None:
    """A file of new content whose encoding the store already holds (a face near `like`'s),
    as if the encoder had just written it: the refresh is what is under test."""
    dest.write_bytes(like.read_bytes() + f"\n{shift}".encode())
    with pipeline.store.reading() as con:
        base = embeddings.load_faces(con, pipeline.model, [content_hash(like)])
    vector = base.vectors[0] + np.float32(shift)
    row = embeddings.EncodingRow(
        hash=content_hash(dest),
        status=Status.OK,
        message="",
        detected=1,
        whole_image=False,
        width=int(base.width[0]),
        height=int(base.height[0]),
        faces=[embeddings.FaceRow(box=(1, 1, 100, 100), vector=vector)],
    )
    with pipeline.store.writing() as con:
        embeddings.write_encodings(con, pipeline.model, [row], utcnow())


def test_kept_faces_equal_a_fresh_read_through_every_kind_of_change(
    tmp_path: Path, seed_encodings
) -> None:
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj", "Joe_Biden", "Joseph_Biden"])
    db = seed_encodings(tmp_path / "facelint.duckdb")
    pipeline = Pipeline(Settings(root=root, db=db, workers=1, backend="numpy"))
    try:
        assert pipeline.run().encoded == 0
        assert_same_faces(pipeline)
        amy = sorted((root / "Amy").iterdir())
        # New contents, as the daemon's events name them: appended to the kept array,
        # not a copy of it, and only the rows the scan and the encoding touched read.
        new_content(pipeline, amy[0], root / "Penny" / "new1.png", 0.01)
        stats = pipeline.run(["Penny/new1.png"])
        assert stats.encoded == 0 and stats.pairs > 0
        assert pipeline._faces._files is not None
        touched = pipeline._faces._files.touched
        assert touched is not None and 0 < len(touched) < 10
        assert_same_faces(pipeline)
        buffer = pipeline._faces._buffer
        new_content(pipeline, amy[1], root / "Raj" / "new2.png", 0.02)
        pipeline.run(["Raj/new2.png"])
        assert_same_faces(pipeline)
        kept = pipeline._faces.faces
        assert kept is not None and np.shares_memory(kept.vectors, buffer)
        # A copy of a known content, a move and a deletion: gathered in file order.
        shutil.copy2(amy[2], root / "Raj" / "copy.png")
        amy[3].rename(root / "Penny" / amy[3].name)
        amy[4].unlink()
        pipeline.run(
            ["Raj/copy.png", f"Penny/{amy[3].name}", f"Amy/{amy[3].name}", f"Amy/{amy[4].name}"]
        )
        assert_same_faces(pipeline)
        # A folder renamed: every file of it changes class.
        (root / "Raj").rename(root / "Raj2")
        pipeline.run([], folders=["Raj", "Raj2"])
        assert_same_faces(pipeline)
        # A full scan reads every file row again (a row changed by hand is seen there).
        pipeline.run()
        assert pipeline._faces._files is not None and pipeline._faces._files.touched is None
        assert_same_faces(pipeline)
        # Nothing changed: the same faces, nothing read again.
        before = pipeline._faces.faces
        pipeline.refresh()
        assert pipeline._faces.faces is not None
        assert np.shares_memory(pipeline._faces.faces.vectors, before.vectors)
        assert_same_faces(pipeline)
    finally:
        pipeline.close()


def test_bench_scale_runs_one_size_and_ends_with_its_summary_line(tmp_path: Path) -> None:
    import re
    import subprocess
    import sys

    import pytest

    pytest.importorskip("faiss", reason="faiss is not installed: pip install '.[index]'")
    bench = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_scale.py"
    out = tmp_path / "scale.txt"
    proc = subprocess.run(
        [sys.executable, str(bench), "--n", "3000", "--d", "32", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(
        r"n=(\d+) d=32 exact_cpu_s=[\d.]+ index_cpu_s=[\d.]+ ratio=[\d.]+ "
        r"pair_recall=([\d.]+) planted_found=(\d+)/(\d+)",
        last,
    )
    assert m, last
    assert float(m[2]) > 0.9 and int(m[4]) > 0
    assert last in out.read_text(encoding="utf-8")
