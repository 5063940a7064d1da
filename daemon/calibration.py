"""Calibrated scores whose meaning holds at any data-set size.

A reviewer needs the number of false matches *per image* at the threshold to stay small
however large the set grows. Different people's pairs grow with N², one person's with N,
so a fixed quantile (the first release's 1.5 %) fills the store with strangers at scale
(25 M pairs at 57,637 faces). Here the threshold score 0.4 sits at the raw cosine that
different people reach with a tail probability of TARGET_FALSE_PER_IMAGE / N: about 0.1
false matches per image at any N (docs/design.md, "Scores").

That tail lies far beyond what any sample sees (≈2·10⁻⁶ at 57,637 images), so it is
fitted: raw cosines of random cross-folder pairs (nearly all different people), a normal
fitted to their upper quantiles by least squares on the normal scale, extrapolated
(daemon/common/stats.py, shared with the suggestions' tails). The fit stops short of
the sample's very top, where real mistakes among the random draws sit (one person under
two names makes its pairs cross-folder); measured on LFW with 100 planted mistakes, the
fitted tail errs on the safe side (fewer false matches than the target, not more). The
map from raw cosine to score is piecewise linear and monotone, so the model's ranking is
kept; the same-person rate at the threshold (recall) is read off pairs inside folders,
which are mostly right.

A model whose raw cosine is already a similarity in the everyday sense (ArcFace) keeps
the identity map unless the tail says 0.4 admits too many: then the map only tightens,
never loosens.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

from daemon.common.content import content_keys, content_order, content_seed
from daemon.common.stats import calibration_tail
from store.scores import ANCHOR_SCORE, Calibration

# Expected false matches per image at the threshold score.
TARGET_FALSE_PER_IMAGE = 0.1
# Fewer cross-folder pairs than this and a tail fit is noise: use the prior instead.
MIN_SAMPLES = 1000
# Cross-folder pairs sampled for the fit, and same-folder pairs for the recall estimate.
MAX_SAMPLES = 1_000_000
MAX_GENUINE = 200_000
# The prior: about what the estimate gives on the dev faces (dlib ResNet, 70 faces, 15
# folders: zero 0.835, anchor 0.932).
PRIOR_ZERO_COS = 0.835
PRIOR_ANCHOR_COS = 0.93
# Cosines this close to 1 are one face twice (a copied file), not two people.
IDENTICAL_COS = 0.9999
# Pairs gathered at a time when sampling (memory: 2 x chunk x d floats).
SAMPLE_CHUNK = 16_384

_NORMAL = NormalDist()


def identity(images: int = 0) -> Calibration:
    """For models whose raw cosine already centres different people near 0 (ArcFace)."""
    return Calibration("identity", 0.0, ANCHOR_SCORE, ANCHOR_SCORE, images=images)


def prior(images: int = 0) -> Calibration:
    return Calibration("prior", PRIOR_ZERO_COS, PRIOR_ANCHOR_COS, images=images)


def estimate(
    unit: np.ndarray,
    classes: np.ndarray,
    raw_is_score: bool = False,
    target: float = TARGET_FALSE_PER_IMAGE,
    keys: Sequence[str] | None = None,
) -> Calibration:
    """Estimate from unit-length embeddings, their integer class codes and their content
    keys (the files' content hashes; None: the vectors' bytes).

    A function of the data: the faces are put in content order and the draws seeded from
    that content (daemon/kinds/stats.py, as the suggestions do), so the same files give
    the same calibration whatever their file ids or the order they arrived in."""
    n = len(unit)
    if keys is None:
        keys = content_keys(unit)
    order = content_order(classes, keys)
    unit, classes = unit[order], classes[order]
    seed = content_seed(classes, [keys[i] for i in order.tolist()])
    cos = _cross_class_sample(unit, classes, MAX_SAMPLES, seed)
    # Identical faces (the same file in two folders) say nothing about different people.
    cos = cos[cos < IDENTICAL_COS]
    if len(cos) < MIN_SAMPLES:
        return identity(n) if raw_is_score else prior(n)
    tail = calibration_tail(cos)
    loc, scale = tail.loc, tail.scale
    sizes = np.bincount(classes)
    # Each image meets every image outside its own folder.
    cross = float(n - np.mean(sizes[classes]))
    rate = min(0.5, target / max(cross, 1.0))
    anchor = loc + scale * _NORMAL.inv_cdf(1.0 - rate)
    genuine = _same_class_sample(unit, classes, MAX_GENUINE, seed)
    if raw_is_score:
        zero = 0.0
        anchor = max(anchor, ANCHOR_SCORE)
        kind = "identity" if anchor == ANCHOR_SCORE else "tail"
    else:
        zero = float(np.median(cos))
        kind = "tail"
        if not zero < anchor < 1.0:
            return prior(n)
    cal = Calibration(
        kind,
        zero,
        float(min(anchor, 0.9999)),
        ANCHOR_SCORE,
        samples=len(cos),
        images=n,
        tail_loc=loc,
        tail_scale=scale,
        cross=cross,
    )
    recall = float(np.mean(genuine >= cal.anchor_cos)) if len(genuine) else None
    return cal.with_recall(recall, len(genuine))


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
    # Seeded from the content: the same data gives the same calibration, so nothing
    # rescores for noise.
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=max_samples * 2)
    j = rng.integers(0, n, size=max_samples * 2)
    keep = classes[i] != classes[j]
    i, j = i[keep][:max_samples], j[keep][:max_samples]
    return _dots(unit, i, j)


def _same_class_sample(
    unit: np.ndarray, classes: np.ndarray, max_samples: int, seed: int
) -> np.ndarray:
    """Cosines of pairs inside folders (one person, mostly), at most max_samples."""
    order = np.argsort(classes, kind="stable")
    c = classes[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sizes = np.diff(np.r_[starts, len(c)])
    total = int((sizes * (sizes - 1) // 2).sum())
    if total == 0:
        return np.empty(0, dtype=np.float32)
    rng = np.random.default_rng(seed)
    multi = sizes >= 2
    # Draw folders by their number of pairs, then two distinct members of each.
    weights = (sizes * (sizes - 1) / 2)[multi]
    pick = rng.choice(
        np.flatnonzero(multi), size=min(max_samples, total), p=weights / weights.sum()
    )
    a = rng.integers(0, sizes[pick])
    b = (a + 1 + rng.integers(0, sizes[pick] - 1)) % sizes[pick]
    i, j = order[starts[pick] + a], order[starts[pick] + b]
    return _dots(unit, i, j)


def _dots(unit: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    # In chunks: gathering a million pairs at once is two 500 MB copies (d = 128).
    out = np.empty(len(i), dtype=np.result_type(unit.dtype, np.float32))
    for s in range(0, len(i), SAMPLE_CHUNK):
        e = s + SAMPLE_CHUNK
        out[s:e] = np.einsum("ij,ij->i", unit[i[s:e]], unit[j[s:e]])
    return out
