"""ArcFace-style ONNX encoders: faces and landmarks from SCRFD or dlib, the crop the
model's spec asks for, one batched inference per image. No dlib descriptor is computed."""

from __future__ import annotations

import numpy as np

from daemon.encoders import align
from daemon.encoders.base import (
    Encoding,
    Face,
    box_area,
    looks_like_aligned_crop,
    outcome,
    too_small,
)
from daemon.encoders.detect import (
    Detection,
    DlibDetector,
    DlibLandmarks,
    ScrfdDetector,
    largest_first,
    onnx_session,
)
from daemon.encoders.spec import ModelSpec, SpecOverrides, detect_spec, first_op_types
from store.vocab import Status

# A detected face this large in a near-square small image means the file already is an
# aligned crop: the FACE01 model then takes the whole file, as the original tool did.
ALIGNED_CROP_FACE_SHARE = 0.25


class ArcFaceEncoder:
    def __init__(
        self,
        model_path: str,
        model_id: str,
        detector: str = "scrfd",
        scrfd_path: str = "",
        detect_max_side: int = 1024,
        max_faces: int = 5,
        min_face_px: int = 20,
        overrides: SpecOverrides | None = None,
        threads: int = 1,
    ):
        self.model_id = model_id
        self.max_faces = max_faces
        self.min_face_px = min_face_px
        self._session = onnx_session(model_path, threads)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self.spec: ModelSpec = detect_spec(list(inp.shape), first_op_types(model_path), overrides)
        # A model exported with a fixed batch of 1 must be run face by face.
        self._batch = not (isinstance(inp.shape[0], int) and inp.shape[0] == 1)
        out = self._session.get_outputs()[0].shape[-1]
        self.dim = out if isinstance(out, int) else 512
        self._scrfd: ScrfdDetector | None = None
        self._dlib: DlibDetector | None = None
        if detector == "scrfd":
            self._scrfd = ScrfdDetector(scrfd_path, threads)
        else:
            self._dlib = DlibDetector(detector, detect_max_side)
        # The 68-point predictor gives the template's 5 points when dlib detects; the
        # 5-point one is what dlib's face chip is defined on.
        needs_68 = self._dlib is not None and self.spec.alignment == "template"
        needs_5 = self.spec.alignment == "chip"
        self._marks68 = DlibLandmarks(68) if needs_68 else None
        self._marks5 = DlibLandmarks(5) if needs_5 else None

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        if self._scrfd is not None:
            return self._scrfd.detect(rgb)
        assert self._dlib is not None
        return self._dlib.detect(rgb)

    def _landmarks(self, rgb: np.ndarray, kept: list[Detection]) -> None:
        # dlib's detector gives boxes only: its 68 points give the template's 5, for the
        # faces that will be encoded.
        if self._marks68 is not None:
            for d in kept:
                d.landmarks = self._marks68.arcface_five(rgb, d.box)

    def _crop(self, rgb: np.ndarray, det: Detection) -> np.ndarray:
        size = self.spec.size
        if self.spec.alignment == "chip":
            assert self._marks5 is not None
            return align.face_chip(rgb, self._marks5.shape(rgb, det.box), size, 0.1)
        assert det.landmarks is not None
        return align.arcface_crop(rgb, det.landmarks, size)

    def _embed(self, crops: list[np.ndarray]) -> np.ndarray:
        x = np.stack(crops).astype(np.float32)
        if self.spec.channels == "bgr":
            x = x[..., ::-1]
        x = (x - np.array(self.spec.mean, np.float32)) / np.array(self.spec.std, np.float32)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self._batch:
            out = self._session.run(None, {self._input: x})[0]
        else:
            out = np.concatenate(
                [self._session.run(None, {self._input: x[i : i + 1]})[0] for i in range(len(x))]
            )
        return np.asarray(out, dtype=np.float32).reshape(len(crops), -1)

    def _is_aligned_file(self, w: int, h: int, found: list[Detection]) -> bool:
        if not looks_like_aligned_crop(w, h):
            return False
        if not found:
            return True
        return (
            self.spec.alignment == "chip"
            and len(found) == 1
            and box_area(found[0].box) >= ALIGNED_CROP_FACE_SHARE * w * h
        )

    def encode_array(self, rgb: np.ndarray) -> Encoding:
        h, w = rgb.shape[:2]
        small = too_small(w, h, self.min_face_px)
        if small:
            return Encoding(Status.NO_FACE, small, self.model_id, w, h)
        found = largest_first(self._detect(rgb), self.min_face_px)
        if not found and not looks_like_aligned_crop(w, h):
            return Encoding(Status.NO_FACE, "no face detected", self.model_id, w, h)
        # No face found in an aligned crop: the crop is taken as already aligned, the
        # same fallback dlib's encoder makes.
        whole = not found
        if self._is_aligned_file(w, h, found):
            kept = [Detection((0, 0, w, h))] if whole else found[:1]
            crops = [align.resize_square(rgb, self.spec.size)]
            used_whole_file = True
        else:
            kept = found[: self.max_faces]
            self._landmarks(rgb, kept)
            crops = [self._crop(rgb, d) for d in kept]
            used_whole_file = False
        vectors = self._embed(crops)
        faces = [Face(d.box, v, d.score, d.landmarks) for d, v in zip(kept, vectors, strict=True)]
        status, message = outcome(len(found), len(faces), whole)
        if used_whole_file and not whole:
            message = "an aligned crop: the whole file was encoded"
        return Encoding(status, message, self.model_id, w, h, whole, len(found), faces)
