"""Face crops a model expects: the ArcFace 112 px template fit, and dlib's face chip."""

from __future__ import annotations

from typing import Any

import numpy as np

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
    """size×size crop of rgb under the 2×3 forward matrix, bilinear, black outside
    (what cv2.warpAffine does with its defaults; cv2 is not a dependency)."""
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)[:2]
    ys, xs = np.mgrid[:size, :size].astype(np.float64)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    h, w = rgb.shape[:2]
    x0, y0 = np.floor(sx).astype(np.int64), np.floor(sy).astype(np.int64)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    src = rgb.astype(np.float32)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = ((xx >= 0) & (xx < w) & (yy >= 0) & (yy < h))[..., None]
        return np.where(inside, src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    out = top * (1 - fy) + bottom * fy
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


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
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
