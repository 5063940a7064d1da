"""The contract every encoder keeps: what an encoding of one image is, and model ids.

Every encoder has a `model_id` that is stored with each embedding: embeddings of
different models are never compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from daemon.common.imaging import ImageReadError, load_rgb
from store.vocab import Status

Box = tuple[int, int, int, int]  # left, top, right, bottom, original pixels


@dataclass
class Face:
    box: Box
    vector: np.ndarray  # float32, the model's raw embedding (not normalised)
    det_score: float = 0.0  # detector confidence (0 for HOG)
    # 5×2 float32, original pixels. Their meaning is the model's: dlib's 5-point
    # predictor (eye corners, nose base) or ArcFace's (eye centres, nose tip, mouth corners).
    landmarks: np.ndarray | None = None


@dataclass
class Encoding:
    status: Status
    message: str = ""
    model: str = ""
    width: int = 0
    height: int = 0
    whole_image: bool = False
    detected: int = 0  # faces the detector found (may exceed the cap)
    faces: list[Face] = field(default_factory=list)  # encoded, largest first, ≤ max_faces

    # The pipeline stores one face per image for now: the largest.
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


def box_area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def looks_like_aligned_crop(width: int, height: int) -> bool:
    # Scraped, aligned crops are near-square and small; a photo that happens to have no
    # face (a landscape) is neither, and must stay `no_face` rather than be encoded whole.
    return max(width, height) <= 700 and 0.8 <= width / height <= 1.25


def too_small(width: int, height: int, min_face_px: int) -> str:
    """Why an image cannot hold a usable face, or "" when it can."""
    if min(width, height) < min_face_px:
        return f"image too small ({width}x{height} px; faces under {min_face_px} px are not used)"
    return ""


def outcome(detected: int, encoded: int, whole: bool) -> tuple[Status, str]:
    """Status and message of an image with `detected` faces, `encoded` of them kept."""
    if whole:
        return Status.OK, "no face detected in an aligned crop: whole image used as the face"
    if detected > 1:
        kept = "the largest was" if encoded == 1 else f"the {encoded} largest were"
        return Status.MULTI_FACE, f"{detected} faces found; {kept} encoded"
    return Status.OK, ""


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
            Status.ERROR,
            f"{type(exc).__name__}: {exc}",
            model=encoder.model_id,
            width=rgb.shape[1],
            height=rgb.shape[0],
        )


def dlib_model_id(num_jitters: int) -> str:
    return f"dlib-resnet-v1/5pt/j{num_jitters}"


def arcface_model_id(weights: str, detector: str) -> str:
    """`weights` is the packaged model's name or the user's file name; the detector is part
    of the id because its landmarks decide the crop the model sees."""
    return f"arcface:{weights}/{detector}"
