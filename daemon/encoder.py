"""Face encoders: an image in, its faces and one embedding out.

Every encoder has a `model_id` that is stored with each embedding: embeddings of different
models are never compared. A new model is a new class implementing `Encoder`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.images import ImageReadError, load_rgb

Box = tuple[int, int, int, int]  # left, top, right, bottom in original pixels


MAX_FACES = 5


@dataclass
class Face:
    box: Box
    vector: np.ndarray
    det_score: float = 0.0
    landmarks: np.ndarray | None = None


@dataclass
class Encoding:
    status: str  # ok | no_face | multi_face | unreadable | error
    message: str = ""
    model: str = ""
    width: int = 0
    height: int = 0
    whole_image: bool = False
    detected: int = 0
    faces: list[Face] = field(default_factory=list)

    @property
    def vector(self) -> np.ndarray | None:
        return self.faces[0].vector if self.faces else None

    @property
    def box(self) -> Box | None:
        return self.faces[0].box if self.faces else None


class Encoder(Protocol):
    model_id: str
    dim: int

    def encode_array(self, rgb: np.ndarray) -> Encoding: ...


def _looks_like_aligned_crop(width: int, height: int) -> bool:
    # Scraped, aligned crops are near-square and small; a photo that happens to have no
    # face (a landscape) is neither, and must stay `no_face` rather than be encoded whole.
    return max(width, height) <= 700 and 0.8 <= width / height <= 1.25


class DlibEncoder:
    """dlib: HOG (CPU) or MMOD CNN (CUDA) detector, 5-point landmarks, ResNet descriptor."""

    dim = 128

    def __init__(self, num_jitters: int = 1, detector: str = "auto", detect_max_side: int = 1024):
        import dlib  # imported here so that importing facelint loads no model

        self._dlib = dlib
        self.num_jitters = num_jitters
        cuda = bool(getattr(dlib, "DLIB_USE_CUDA", False))
        self.detector_kind = ("cnn" if cuda else "hog") if detector == "auto" else detector
        self.detect_max_side = detect_max_side
        import face_recognition_models as frm

        self._shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        if self.detector_kind == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        else:
            self._hog = dlib.get_frontal_face_detector()
        self.model_id = model_id_for(num_jitters, "")

    def _detect(self, rgb: np.ndarray) -> list[tuple[Box, float]]:
        h, w = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if max(h, w) > self.detect_max_side:
            scale = self.detect_max_side / max(h, w)
            from PIL import Image

            small = np.asarray(
                Image.fromarray(rgb).resize(
                    (max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR
                )
            )
        # HOG's smallest face is 80 px: small crops need one upsampling to be found.
        upsample = 1 if min(small.shape[:2]) < 400 else 0
        boxes: list[tuple[Box, float]] = []
        if self.detector_kind == "cnn":
            for d in self._cnn(small, upsample):
                boxes.append((_rect(d.rect, scale, w, h), float(d.confidence)))
        else:
            for d in self._hog(small, upsample):
                boxes.append((_rect(d, scale, w, h), 0.0))
        return [b for b in boxes if b[0][2] > b[0][0] and b[0][3] > b[0][1]]

    def encode_array(self, rgb: np.ndarray) -> Encoding:
        h, w = rgb.shape[:2]
        found = self._detect(rgb)
        whole = False
        if not found:
            if not _looks_like_aligned_crop(w, h):
                return Encoding("no_face", "no face detected", self.model_id, w, h)
            whole = True
            boxes: list[tuple[Box, float]] = [((0, 0, w, h), 0.0)]
        else:
            boxes = sorted(found, key=lambda b: -(b[0][2] - b[0][0]) * (b[0][3] - b[0][1]))
        dlib = self._dlib
        faces = []
        for box, det in boxes[:MAX_FACES]:
            rect = dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1)
            shape = self._shape(rgb, rect)
            vec = np.asarray(
                self._net.compute_face_descriptor(rgb, shape, self.num_jitters), dtype=np.float32
            )
            faces.append(Face(box, vec, det))
        if whole:
            status, msg = "ok", "no face detected in an aligned crop: whole image used as the face"
        elif len(found) > 1:
            status, msg = "multi_face", f"{len(found)} faces found; each is encoded"
        else:
            status, msg = "ok", ""
        return Encoding(status, msg, self.model_id, w, h, whole, len(found), faces)


def _rect(r: object, scale: float, w: int, h: int) -> Box:
    left, top = r.left() / scale, r.top() / scale  # type: ignore[attr-defined]
    right, bottom = (r.right() + 1) / scale, (r.bottom() + 1) / scale  # type: ignore[attr-defined]
    return (
        max(0, round(left)),
        max(0, round(top)),
        min(w, round(right)),
        min(h, round(bottom)),
    )


class OnnxArcFaceEncoder:
    """An ArcFace-style ONNX model (112 or 224 px input, ImageNet normalisation).

    dlib still finds the face and its 5 landmarks; the crop is dlib's face chip with
    padding 0.1, as the original tool used.
    """

    def __init__(self, model_path: str, detector: str = "auto", detect_max_side: int = 1024):
        import onnxruntime as ort

        self._dlib_enc = DlibEncoder(1, detector, detect_max_side)
        self._session = ort.InferenceSession(model_path, providers=ort.get_available_providers())
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._size = int(inp.shape[-1]) if isinstance(inp.shape[-1], int) else 224
        out = self._session.get_outputs()[0]
        self.dim = int(out.shape[-1]) if isinstance(out.shape[-1], int) else 512
        self.model_id = model_id_for(1, model_path)

    def encode_array(self, rgb: np.ndarray) -> Encoding:
        base = self._dlib_enc.encode_array(rgb)
        if base.vector is None or base.box is None:
            base.model = self.model_id
            return base
        dlib = self._dlib_enc._dlib
        b = base.box
        rect = dlib.rectangle(b[0], b[1], b[2] - 1, b[3] - 1)
        shape = self._dlib_enc._shape(rgb, rect)
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=self._size, padding=0.1))
        x = (chip.astype(np.float32) / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / (
            np.array([0.229, 0.224, 0.225], np.float32)
        )
        x = x.transpose(2, 0, 1)[None]
        vec = np.asarray(self._session.run(None, {self._input: x})[0][0], dtype=np.float32)
        base.vector = vec
        base.model = self.model_id
        return base


def model_id_for(num_jitters: int, onnx_model: str) -> str:
    """The model id an encoder with these options writes, known without loading it."""
    if onnx_model:
        return f"onnx:{Path(onnx_model).name}"
    return f"dlib-resnet-v1/5pt/j{num_jitters}"


def make_encoder(num_jitters: int, detector: str, detect_max_side: int, onnx_model: str = ""):
    if onnx_model:
        return OnnxArcFaceEncoder(onnx_model, detector, detect_max_side)
    return DlibEncoder(num_jitters, detector, detect_max_side)


def encode_file(encoder: Encoder, path: Path, max_pixels: int) -> Encoding:
    """Never raises for a bad file: the failure becomes the result's status and message."""
    try:
        rgb = load_rgb(path, max_pixels)
    except ImageReadError as exc:
        return Encoding(exc.status, exc.message, model=encoder.model_id)
    try:
        return encoder.encode_array(rgb)
    except Exception as exc:  # a model failure on one image must not stop the run
        return Encoding(
            "error",
            f"{type(exc).__name__}: {exc}",
            model=encoder.model_id,
            width=rgb.shape[1],
            height=rgb.shape[0],
        )
