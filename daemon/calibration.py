"""Calibrated scores: a monotone map of raw cosine so that the threshold means something.

Raw dlib cosine ranks pairs best but puts every pair of people above 0.4
(docs/design.md). We keep its order and move the scale: the map is piecewise linear
through (-1, -1), (zero_cos, 0), (anchor_cos, 0.4), (1, 1), where zero_cos is the median raw
cosine of cross-class pairs in the user's own data (a typical pair of different people scores 0),
and anchor_cos is the cosine that only `false_rate` of cross-class pairs reach (so 0.4
admits about that fraction of different people). Cross-class pairs are nearly all
different people, and their distribution is the user's population's own: a Western
prior would not fit Japanese faces (docs/design.md measured 60 % false pairs that way).
"""

from __future__ import annotations

import numpy as np

from store.scores import ANCHOR_SCORE, Calibration

# Fraction of different-person pairs allowed to reach ANCHOR_SCORE. Measured on the dev
# faces: 1.5 % keeps 95 % of same-person pairs at >= 0.4 with about 1 % false pairs.
DEFAULT_FALSE_RATE = 0.015
# Fewer cross-class pairs than this and a quantile is noise: use the prior instead.
MIN_SAMPLES = 1000
# The prior: what the estimate gives on the dev faces (dlib ResNet, 68 faces, 15 folders).
PRIOR_ZERO_COS = 0.835
PRIOR_ANCHOR_COS = 0.905
# Pairs gathered at a time when sampling cross-class cosines (memory: 2 x chunk x d floats).
SAMPLE_CHUNK = 16_384


def identity() -> Calibration:
    """For models whose raw cosine already centres different people near 0 (ArcFace)."""
    return Calibration("identity", 0.0, ANCHOR_SCORE, ANCHOR_SCORE)


def prior(images: int = 0) -> Calibration:
    return Calibration("prior", PRIOR_ZERO_COS, PRIOR_ANCHOR_COS, images=images)


def estimate(
    unit: np.ndarray,
    classes: np.ndarray,
    false_rate: float = DEFAULT_FALSE_RATE,
    max_samples: int = 400_000,
    seed: int = 0,
) -> Calibration:
    """Estimate from unit-length embeddings and their integer class codes."""
    n = len(unit)
    cos = _cross_class_sample(unit, classes, max_samples, seed)
    if len(cos) < MIN_SAMPLES:
        return prior(n)
    zero = float(np.median(cos))
    anchor = float(np.quantile(cos, 1.0 - false_rate))
    if not zero < anchor < 1.0:
        return prior(n)
    return Calibration("quantile", zero, anchor, ANCHOR_SCORE, false_rate, len(cos), n)


def _cross_class_sample(
    unit: np.ndarray, classes: np.ndarray, max_samples: int, seed: int
) -> np.ndarray:
    n = len(unit)
    if n < 2:
        return np.empty(0, dtype=np.float32)
    if n * (n - 1) // 2 <= max_samples:
        sims = unit @ unit.T
        i, j = np.triu_indices(n, 1)
        keep = classes[i] != classes[j]
        return sims[i[keep], j[keep]]
    # A fixed seed: the same data gives the same calibration, so nothing rescores for noise.
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=max_samples * 2)
    j = rng.integers(0, n, size=max_samples * 2)
    keep = classes[i] != classes[j]
    i, j = i[keep][:max_samples], j[keep][:max_samples]
    # In chunks: gathering all 400,000 pairs at once is two 200 MB copies (d = 128),
    # more memory than the whole comparison of 57,637 images needs.
    out = np.empty(len(i), dtype=np.result_type(unit.dtype, np.float32))
    for s in range(0, len(i), SAMPLE_CHUNK):
        e = s + SAMPLE_CHUNK
        out[s:e] = np.einsum("ij,ij->i", unit[i[s:e]], unit[j[s:e]])
    return out
