"""Face detectors: dlib HOG / MMOD CNN, and SCRFD (ONNX). Boxes and landmarks come back
in the original image's pixels, largest face first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from daemon.encoders.base import Box, box_area

# SCRFD (InsightFace) as shipped in scrfd_500m_bnkps.onnx: three strides, two anchors
# per cell, outputs ordered scores, boxes, keypoints (docs/design.md, "Encoders").
SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS = 2
# The package's default 0.5 too, but with padding (below) it finds every dev face.
SCRFD_CONFIDENCE = 0.5
SCRFD_NMS = 0.4
# Largest side of SCRFD's input. Small crops are run at their own (padded) size.
SCRFD_MAX_SIDE = 640
# Zero border added on each side, as a fraction of the longest side. SCRFD never saw a
# face filling the whole frame: on tight 150 px crops it finds nothing without it.
SCRFD_PAD = 0.1


@dataclass
class Detection:
    box: Box
    score: float = 0.0
    landmarks: np.ndarray | None = None  # 5×2 float32, original pixels


def largest_first(found: list[Detection], min_face_px: int) -> list[Detection]:
    """Detections whose box is at least min_face_px on its shorter side, largest first."""
    kept = [
        d for d in found if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= max(1, min_face_px)
    ]
    return sorted(kept, key=lambda d: box_area(d.box), reverse=True)


def _clip_box(left: float, top: float, right: float, bottom: float, w: int, h: int) -> Box:
    return (
        max(0, round(left)),
        max(0, round(top)),
        min(w, round(right)),
        min(h, round(bottom)),
    )


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


class DlibDetector:
    """dlib's HOG detector (CPU) or MMOD CNN (when dlib has CUDA). Large photos are shrunk
    to `max_side` for detection and the boxes mapped back."""

    def __init__(self, kind: str = "auto", max_side: int = 1024):
        import dlib  # here, not at import: importing facelint loads no model
        import face_recognition_models as frm

        cuda = bool(getattr(dlib, "DLIB_USE_CUDA", False))
        self.kind = ("cnn" if cuda else "hog") if kind == "auto" else kind
        self.max_side = max_side
        if self.kind == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        else:
            self._hog = dlib.get_frontal_face_detector()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        scale = 1.0
        small = rgb
        if max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            small = _resize(rgb, max(1, round(w * scale)), max(1, round(h * scale)))
        # HOG's smallest face is 80 px: small crops need one upsampling to be found.
        upsample = 1 if min(small.shape[:2]) < 400 else 0
        found: list[Detection] = []
        if self.kind == "cnn":
            for d in self._cnn(small, upsample):
                found.append(Detection(_rect(d.rect, scale, w, h), float(d.confidence)))
        else:
            for r in self._hog(small, upsample):
                found.append(Detection(_rect(r, scale, w, h), 0.0))
        return [d for d in found if d.box[2] > d.box[0] and d.box[3] > d.box[1]]


def _rect(r: Any, scale: float, w: int, h: int) -> Box:
    return _clip_box(
        r.left() / scale, r.top() / scale, (r.right() + 1) / scale, (r.bottom() + 1) / scale, w, h
    )


class DlibLandmarks:
    """dlib's shape predictor on a box: the 5-point model (dlib's descriptor and face chip)
    or the 68-point model (whose points give ArcFace's 5)."""

    def __init__(self, points: int = 5):
        import dlib
        import face_recognition_models as frm

        self._dlib = dlib
        self.points = points
        path = (
            frm.pose_predictor_five_point_model_location()
            if points == 5
            else frm.pose_predictor_model_location()  # shape_predictor_68_face_landmarks.dat
        )
        self._predictor = dlib.shape_predictor(path)

    def shape(self, rgb: np.ndarray, box: Box) -> Any:
        """dlib's full_object_detection for the box (what its descriptor and chips take)."""
        rect = self._dlib.rectangle(box[0], box[1], box[2] - 1, box[3] - 1)
        return self._predictor(rgb, rect)

    def points_of(self, shape: Any) -> np.ndarray:
        """The predictor's points as an n×2 float32 array."""
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def arcface_five(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """Eye centres, nose tip, mouth corners (the ArcFace template's order), from 68 points."""
        if self.points != 68:
            raise ValueError("ArcFace's 5 points need the 68-point predictor")
        p = self.points_of(self.shape(rgb, box))
        return np.stack(
            [p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]]  # image left eye first
        ).astype(np.float32)


def onnx_session(path: str, threads: int = 1) -> Any:
    """An onnxruntime session on the GPU when onnxruntime has CUDA, with `threads` CPU
    threads: each worker process is one core's worth of work."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # batched runs of a [1, 512]-declared output warn per run
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider",) if p in available]
    providers.append("CPUExecutionProvider")
    return ort.InferenceSession(path, sess_options=opts, providers=providers)


class ScrfdDetector:
    """SCRFD with keypoints: boxes, scores and ArcFace's 5 points, decoded here by hand
    (three strides, anchor centres, distance-to-box/keypoints, NMS)."""

    def __init__(
        self,
        model_path: str,
        threads: int = 1,
        confidence: float = SCRFD_CONFIDENCE,
        max_side: int = SCRFD_MAX_SIDE,
    ):
        self._session = onnx_session(model_path, threads)
        self._input = self._session.get_inputs()[0].name
        self.confidence = confidence
        self.max_side = max_side
        self._centres: dict[tuple[int, int, int], np.ndarray] = {}

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        pad = round(SCRFD_PAD * max(h, w))
        side_w, side_h = w + 2 * pad, h + 2 * pad
        scale = min(1.0, self.max_side / max(side_w, side_h))
        pw, ph = max(1, round(w * scale)), max(1, round(h * scale))
        off = round(pad * scale)
        # The network's input must be a multiple of its largest stride.
        in_w = -(-(pw + 2 * off) // 32) * 32
        in_h = -(-(ph + 2 * off) // 32) * 32
        canvas = np.zeros((in_h, in_w, 3), np.uint8)
        canvas[off : off + ph, off : off + pw] = rgb if scale == 1.0 else _resize(rgb, pw, ph)
        blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self._session.run(None, {self._input: blob})
        boxes, scores, kps = self._decode(outs, in_h, in_w)
        keep = nms(boxes, scores, SCRFD_NMS)
        sx, sy = pw / w, ph / h
        found = []
        for i in keep:
            b = boxes[i]
            x0, y0 = (b[0] - off) / sx, (b[1] - off) / sy
            x1, y1 = (b[2] - off) / sx, (b[3] - off) / sy
            box = _clip_box(x0, y0, x1, y1, w, h)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            pts = ((kps[i] - off) / np.array([sx, sy], np.float32)).astype(np.float32)
            found.append(Detection(box, float(scores[i]), pts))
        return found

    def _anchor_centres(self, height: int, width: int, stride: int) -> np.ndarray:
        key = (height, width, stride)
        if key not in self._centres:
            grid = np.stack(np.mgrid[:height, :width][::-1], axis=-1).astype(np.float32)
            centres = (grid * stride).reshape(-1, 2)
            self._centres[key] = np.repeat(centres, SCRFD_ANCHORS, axis=0)
        return self._centres[key]

    def _decode(
        self, outs: list[np.ndarray], in_h: int, in_w: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(SCRFD_STRIDES)
        all_boxes, all_scores, all_kps = [], [], []
        for i, stride in enumerate(SCRFD_STRIDES):
            # Batched export: outputs are [1, cells·anchors, k]; older exports drop the 1.
            scores = outs[i].reshape(-1)
            dist = outs[i + n].reshape(-1, 4) * stride
            kdist = outs[i + 2 * n].reshape(-1, 10) * stride
            centres = self._anchor_centres(in_h // stride, in_w // stride, stride)
            hit = np.flatnonzero(scores >= self.confidence)
            if len(hit) == 0:
                continue
            all_boxes.append(distance2bbox(centres[hit], dist[hit]))
            all_kps.append(distance2kps(centres[hit], kdist[hit]).reshape(-1, 5, 2))
            all_scores.append(scores[hit])
        if not all_boxes:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2))
        return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_kps)


def distance2bbox(centres: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Boxes from an anchor centre and its distances to the four sides."""
    return np.stack(
        [
            centres[:, 0] - dist[:, 0],
            centres[:, 1] - dist[:, 1],
            centres[:, 0] + dist[:, 2],
            centres[:, 1] + dist[:, 3],
        ],
        axis=-1,
    )


def distance2kps(centres: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Keypoints from an anchor centre and their (dx, dy) offsets."""
    out = dist.copy()
    out[:, 0::2] += centres[:, :1]
    out[:, 1::2] += centres[:, 1:2]
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_limit: float) -> list[int]:
    """Greedy non-maximum suppression: indices of the boxes kept, best first."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(0.0, xx2 - xx1 + 1) * np.maximum(0.0, yy2 - yy1 + 1)
        iou = inter / (area[i] + area[rest] - inter)
        order = rest[iou <= iou_limit]
    return keep
