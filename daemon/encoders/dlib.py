"""dlib's encoder: HOG (CPU) or MMOD CNN (CUDA) detector, 5-point landmarks, ResNet
128-d descriptor."""

from __future__ import annotations

import numpy as np

from daemon.encoders.base import (
    Encoding,
    Face,
    dlib_model_id,
    looks_like_aligned_crop,
    outcome,
    too_small,
)
from daemon.encoders.detect import DlibDetector, DlibLandmarks, largest_first
from store.vocab import Status


class DlibEncoder:
    dim = 128

    def __init__(
        self,
        num_jitters: int = 1,
        detector: str = "auto",
        detect_max_side: int = 1024,
        max_faces: int = 5,
        min_face_px: int = 20,
    ):
        import dlib  # here, not at import: importing facelint loads no model
        import face_recognition_models as frm

        self.num_jitters = num_jitters
        self.max_faces = max_faces
        self.min_face_px = min_face_px
        self._detector = DlibDetector(detector, detect_max_side)
        self.detector_kind = self._detector.kind
        self._landmarks = DlibLandmarks(5)
        self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
        self._dlib = dlib
        self.model_id = dlib_model_id(num_jitters)

    def encode_array(self, rgb: np.ndarray) -> Encoding:
        h, w = rgb.shape[:2]
        small = too_small(w, h, self.min_face_px)
        if small:
            return Encoding(Status.NO_FACE, small, self.model_id, w, h)
        found = largest_first(self._detector.detect(rgb), self.min_face_px)
        whole = False
        if not found:
            if not looks_like_aligned_crop(w, h):
                return Encoding(Status.NO_FACE, "no face detected", self.model_id, w, h)
            whole = True
            boxes = [(0, 0, w, h)]
            scores = [0.0]
        else:
            kept = found[: self.max_faces]
            boxes = [d.box for d in kept]
            scores = [d.score for d in kept]
        shapes = self._dlib.full_object_detections()
        for box in boxes:
            shapes.append(self._landmarks.shape(rgb, box))
        vectors = self._net.compute_face_descriptor(rgb, shapes, self.num_jitters)
        faces = [
            Face(box, np.asarray(vec, dtype=np.float32), score, self._landmarks.points_of(shape))
            for box, score, shape, vec in zip(boxes, scores, shapes, vectors, strict=True)
        ]
        status, message = outcome(len(found), len(faces), whole)
        return Encoding(status, message, self.model_id, w, h, whole, len(found), faces)
