"""Face crops a model expects: the ArcFace 112 px template fit, and dlib's face chip."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

# InsightFace's ArcFace template for a 112×112 crop: eye centres, nose tip, mouth corners
# (image-left first), in pixel-index coordinates.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity (rotation, uniform scale, shift) taking src points onto dst in
    the least-squares sense (Umeyama 1991, without reflection)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var_s = (s**2).sum() / len(src)
    scale = float(np.trace(np.diag(sig) @ sign) / var_s) if var_s > 0 else 1.0
    out = np.zeros((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def warp_affine(rgb: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """size×size crop of rgb under the 2×3 forward matrix (pixel-index coordinates),
    bilinear, black outside: what cv2.warpAffine does with its defaults, by Pillow's C
    code (cv2 is not a dependency; a NumPy version took 3 ms a face, this 0.8)."""
    inv = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    a = inv[:, :2]
    # Pillow samples at pixel centres (index + 0.5): shift so index maps to index.
    c = inv[:, 2] + 0.5 - a @ np.array([0.5, 0.5])
    coeffs = (a[0, 0], a[0, 1], c[0], a[1, 0], a[1, 1], c[1])
    out = Image.fromarray(rgb).transform(
        (size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(0, 0, 0)
    )
    return np.asarray(out)


def arcface_crop(rgb: np.ndarray, five: np.ndarray, size: int = 112) -> np.ndarray:
    """The face warped onto the ArcFace template (scaled to `size`) by its 5 points."""
    template = ARCFACE_TEMPLATE * (size / 112.0)
    return warp_affine(rgb, similarity_transform(five, template), size)


def face_chip(rgb: np.ndarray, shape: Any, size: int = 224, padding: float = 0.1) -> np.ndarray:
    """dlib's aligned face chip from a dlib shape (the FACE01 model's input)."""
    import dlib

    return np.asarray(dlib.get_face_chip(rgb, shape, size=size, padding=padding))


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The whole image as a size×size crop: for files that already are aligned faces."""
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
