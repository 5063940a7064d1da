"""Mistakes, not pairs: which folders are one person, which images are filed wrongly.

Everything here works on *centred* faces: the mean face of the data set (the data's own,
docs/design.md) is subtracted from every unit vector, so what two faces share because
they are faces cancels and what they share because they are one person remains. A
folder is its centroid (the normalised mean of its centred faces): averaging cancels
each photo's pose and light, so a folder of eight photos of one man points at him far
more sharply than any single photo.

Each suggestion gets a confidence in [0, 1] on one scale for all kinds: the probability
that it is a real mistake, as prior odds times a likelihood ratio, both read off the data.

- same_person(A, B): x = cosine of the two centroids. "Different people": a normal fitted
  to the upper tail of x over random folder pairs of the same sizes (nearly all of them
  are different people). "One person": the density of x between two disjoint groups of
  those sizes drawn inside folders (folders are mostly right). Prior: SPLIT_RATE of the
  folders have a twin, one of F. A folder of one image needs no special rule: its
  centroid is its face.
- misfiled(i in A, B): the ratio of image i against B's centroid (same densities, for an
  image and a folder), times the ratio "not A's person" from how well i matches the rest
  of A (its leave-one-out centroid): the body of unrelated image-folder matches against
  the density of every image's match to its own folder. Prior: MISFILED_RATE, one of F.
- stranger(i in A): the "not A's person" ratio alone (prior STRANGER_RATE), for an image
  no other folder claims well enough to call it misfiled.
- duplicate: the same content in two folders: 1.0, no model needed (daemon/mistakes.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# Prior odds. Scraped sets are mostly right: about one image in a hundred carries the
# wrong name (misfiled into one of F folders, or a stranger to all of them), and a few
# folders in a hundred have a twin under another name (one of F).
MISFILED_RATE = 0.01
STRANGER_RATE = 0.01
SPLIT_RATE = 0.05
# Suggestions below this confidence are not kept: the queue would only grow.
MIN_CONFIDENCE = 0.02
# Folder-size classes (by images): the null tail is fitted per class where it has data.
SIZE_EDGES = np.array([1, 2, 3, 5, 9, 17])
# Random draws per size class for the null tail, and the fewest for a class of its own.
NULL_SAMPLES = 8_000
MIN_CLASS_SAMPLES = 2_000
# Fewer folders than this and there is no model of different people to test against.
MIN_FOLDERS = 5
# The models are estimated again when the number of images changed by this fraction.
REUSE_GROWTH = 0.01
# Same-person groups needed for a size class's own density; with few folders each is
# split at random again, at most MAX_REDRAWS times.
MIN_SAME_SAMPLES = 30
MAX_REDRAWS = 50
# Beside the folders its stored matches name, a folder of several images (and an image
# that fits its own folder poorly) is examined against every folder that different
# people reach less than 1 time in 1,000 (z = 3.09 on the fitted tail)...
CANDIDATE_Z = 3.09
# ...where "poorly" means its match to its folder is at least this likely for a stranger
# as for one of the folder's own.
LOOSE_RATIO = 0.05
# Image pairs shown with a suggestion.
EVIDENCE_PAIRS = 12

_NORMAL = NormalDist()


@dataclass
class Suggestion:
    kind: str  # same_person | misfiled | stranger
    confidence: float
    folder_a: int  # folder code: same_person either folder; misfiled/stranger the image's
    folder_b: int  # same_person the other; misfiled the proposed destination; else -1
    image: int  # file index for misfiled/stranger, -1 for same_person
    stat: float  # centroid (or image-to-centroid) cosine, centred
    own: float = float("nan")  # misfiled/stranger: the image against the rest of its folder
    images: int = 0  # images involved (both folders)


@dataclass(frozen=True)
class Tail:
    """A normal fitted to the upper tail of a statistic among unrelated folders."""

    loc: float
    scale: float

    def pdf(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.loc) / self.scale
        return np.exp(-0.5 * z * z) / (self.scale * math.sqrt(2 * math.pi))


def fit_tail(sample: np.ndarray, distinct: float) -> Tail:
    """Fit loc + scale * z to the sample's upper quantiles (the tail is what we need).

    `distinct`: how many different pairs the draws come from. The fit stops where ~20 of
    them remain above: past it, real mistakes among the draws (a split's folder pair is
    one of only 153 pairs of 18 folders) would pass for the tail of different people.
    With few pairs it starts at the median, for a stable line."""
    hi = min(3.0, math.log10(max(distinct, 1.0) / 20))
    lo = 1.0 if hi >= 2.0 else 0.3
    ps = 1 - 10 ** -np.linspace(lo, max(hi, lo + 0.5), 10)
    qs = np.quantile(sample, ps)
    zs = np.array([_NORMAL.inv_cdf(float(p)) for p in ps])
    scale, loc = np.polyfit(zs, qs, 1)
    return Tail(float(loc), float(max(scale, 1e-3)))


class Density:
    """A kernel density estimate of a statistic on [-1, 1], read by interpolation."""

    GRID = np.linspace(-1.0, 1.0, 401)

    def __init__(self, sample: np.ndarray, floor: float = 1e-2):
        self.floor = floor
        sample = np.asarray(sample, np.float64)
        if len(sample) < 20:
            self.values = None
            return
        bw = max(1.06 * _robust_sd(sample) * len(sample) ** -0.2, 0.01)
        hist, edges = np.histogram(sample, bins=800, range=(-1.0, 1.0))
        centres = ((edges[:-1] + edges[1:]) / 2)[hist > 0]
        weights = hist[hist > 0]
        dens = (weights[:, None] * np.exp(-0.5 * ((self.GRID - centres[:, None]) / bw) ** 2)).sum(0)
        self.values = dens / (dens.sum() * (self.GRID[1] - self.GRID[0]))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.values is None:
            return np.full(np.shape(x), 1.0)
        # Never below a floor: an estimate is zero past its data, which is not "impossible".
        return np.maximum(np.interp(x, self.GRID, self.values), self.floor)


def centre(unit: np.ndarray) -> np.ndarray:
    w = unit - unit.mean(axis=0, keepdims=True)
    return w / np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)


def size_class(sizes: np.ndarray) -> np.ndarray:
    return np.searchsorted(SIZE_EDGES, sizes, side="right") - 1


def _robust_sd(x: np.ndarray) -> float:
    q25, q75 = np.quantile(x, [0.25, 0.75])
    return max(float(q75 - q25) / 1.349, 1e-3)


class Nulls:
    """The statistics among unrelated folders (random draws: nearly all are different
    people), by size class where a class has enough data, pooled otherwise."""

    def __init__(self, cn: np.ndarray, w: np.ndarray, codes: np.ndarray, sizes: np.ndarray,
                 rng: np.random.Generator):
        n_f, n = len(cn), len(w)
        cls = size_class(sizes)
        n_cls = len(SIZE_EDGES)
        by_class = [np.flatnonzero(cls == c) for c in range(n_cls)]
        a = rng.integers(0, n_f, NULL_SAMPLES * 4)
        b = rng.integers(0, n_f, NULL_SAMPLES * 4)
        keep = a != b
        self.pooled_folder = fit_tail(
            np.einsum("ij,ij->i", cn[a[keep]], cn[b[keep]]), n_f * (n_f - 1) / 2
        )
        self.folder: dict[tuple[int, int], Tail] = {}
        for ca in range(n_cls):
            for cb in range(ca, n_cls):
                fa, fb = by_class[ca], by_class[cb]
                if len(fa) * len(fb) < MIN_CLASS_SAMPLES * 2:
                    continue
                x, y = rng.choice(fa, NULL_SAMPLES), rng.choice(fb, NULL_SAMPLES)
                ok = x != y
                self.folder[(ca, cb)] = fit_tail(
                    np.einsum("ij,ij->i", cn[x[ok]], cn[y[ok]]), len(fa) * len(fb)
                )
        i = rng.integers(0, n, NULL_SAMPLES * 4)
        f = rng.integers(0, n_f, NULL_SAMPLES * 4)
        ok = codes[i] != f
        x = np.einsum("ij,ij->i", w[i[ok]], cn[f[ok]])
        self.pooled_image = fit_tail(x, n * (n_f - 1))
        # The body (not the tail) of an image against an unrelated folder: how a
        # stranger matches the folder it sits in.
        self.image_body = Tail(float(np.median(x)), _robust_sd(x))
        self.image: dict[int, Tail] = {}
        x_cls = cls[f[ok]]
        for c in range(n_cls):
            if (x_cls == c).sum() >= MIN_CLASS_SAMPLES:
                self.image[c] = fit_tail(x[x_cls == c], n * len(by_class[c]))

    def folder_tail(self, ca: int, cb: int) -> Tail:
        return self.folder.get((min(ca, cb), max(ca, cb)), self.pooled_folder)

    def image_tail(self, c: int) -> Tail:
        return self.image.get(c, self.pooled_image)


def _odds_to_probability(odds: np.ndarray) -> np.ndarray:
    odds = np.asarray(odds, np.float64)
    return odds / (1.0 + odds)


def _split_samples(w: np.ndarray, codes: np.ndarray, sizes: np.ndarray, sa: int, sb: int,
                   rng: np.random.Generator, want: int = 0) -> np.ndarray:
    """Centroid cosines of two disjoint random groups of `sa` and `sb` images of one
    folder, for every folder large enough (drawn again, up to `want` values, when there
    are few such folders): what the statistic of a folder pair (or of an image and a
    folder, sa = 1) of those sizes looks like when both are one person."""
    members = np.flatnonzero(sizes[codes] >= sa + sb)
    if len(members) == 0:
        return np.empty(0)
    n_f = len(sizes)
    folders = len(np.unique(codes[members]))
    out = []
    for _ in range(max(1, min(MAX_REDRAWS, -(-want // folders)))):
        order = members[np.lexsort((rng.random(len(members)), codes[members]))]
        c = codes[order]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        used = np.unique(c)
        in_a, in_b = rank < sa, (rank >= sa) & (rank < sa + sb)
        a = group_sums(w[order[in_a]], c[in_a], n_f)[used]
        b = group_sums(w[order[in_b]], c[in_b], n_f)[used]
        na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
        out.append(np.einsum("ij,ij->i", a, b) / np.maximum(na * nb, 1e-12))
    return np.concatenate(out)


class SameDensities:
    """Densities of the statistics when both sides are one person, by size class: read
    off disjoint groups inside folders (folders are mostly right), pooled over larger
    classes where a class has too few folders to say."""

    def __init__(self, w: np.ndarray, codes: np.ndarray, sizes: np.ndarray,
                 rng: np.random.Generator):
        self._w, self._codes, self._sizes, self._rng = w, codes, sizes, rng
        self._cache: dict[tuple[int, int], Density] = {}

    def __call__(self, ca: int, cb: int) -> Density:
        key = (min(ca, cb), max(ca, cb))
        if key not in self._cache:
            sa, sb = int(SIZE_EDGES[key[0]]), int(SIZE_EDGES[key[1]])
            want = MIN_SAME_SAMPLES * 4
            sample = _split_samples(self._w, self._codes, self._sizes, sa, sb, self._rng, want)
            # Too few folders hold sa + sb images: smaller groups stand in (their
            # statistic is noisier, so this errs towards less confidence, not more).
            while len(sample) < MIN_SAME_SAMPLES and sb > 1:
                sb = max(1, sb // 2)
                if sa > sb:
                    sa = sb
                sample = _split_samples(
                    self._w, self._codes, self._sizes, sa, sb, self._rng, want
                )
            self._cache[key] = Density(sample)
        return self._cache[key]


def above(
    q: np.ndarray, a: np.ndarray, bar: float, exclude: np.ndarray | None = None,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """(row of q, row of a) where their dot product reaches `bar`, skipping column
    exclude[row] (its own folder): a thresholded product, like the pair comparison."""
    rows, cols = [], []
    for s in range(0, len(q), chunk):
        sims = q[s : s + chunk] @ a.T
        if exclude is not None:
            sims[np.arange(len(sims)), exclude[s : s + chunk]] = -np.inf
        flat = np.flatnonzero(sims >= bar)
        rows.append(flat // len(a) + s)
        cols.append(flat % len(a))
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows), np.concatenate(cols)


def group_sums(w: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-group sums of rows (np.add.at is several times slower at this size)."""
    order = np.argsort(codes, kind="stable")
    c = codes[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    sums = np.zeros((n_groups, w.shape[1]), dtype=w.dtype)
    if len(order):
        sums[c[starts]] = np.add.reduceat(w[order], starts, axis=0)
    return sums


@dataclass
class Models:
    """What the data says of one person and of different people: costly to estimate,
    stable while the data set grows by little, so a daemon keeps them between runs."""

    nulls: Nulls
    same: SameDensities
    images: int

    def fits(self, n: int) -> bool:
        return abs(n - self.images) <= max(1, REUSE_GROWTH * self.images)


def suggest(
    unit: np.ndarray,
    codes: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    seed: int = 0,
    models: Models | None = None,
) -> tuple[list[Suggestion], Models | None]:
    """Suggestions, and the models behind them (pass them back next time: they are reused
    while the data set changes by little), from unit vectors, folder codes (0..F-1, every
    code used) and the stored match lists (src, dst: file indices of each image's best
    matches elsewhere). The lists, and the folders each folder's (or loosely filed
    image's) centroid comes close to, name the candidates."""
    n = len(unit)
    if n < 3:
        return [], models
    rng = np.random.default_rng(seed)
    n_f = int(codes.max()) + 1
    if n_f < MIN_FOLDERS:
        # Too few folders to say how different people look: with two folders, every
        # "random" folder pair is the one pair in question.
        return [], models
    w = centre(np.asarray(unit, np.float32))
    sums = group_sums(w, codes, n_f)
    sizes = np.bincount(codes, minlength=n_f)
    cn = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    cls = size_class(sizes)
    if models is None or not models.fits(n):
        models = Models(Nulls(cn, w, codes, sizes, rng), SameDensities(w, codes, sizes, rng), n)
    nulls = models.nulls
    # How an image matches the rest of its own folder: mostly right, so this is the
    # same-person density of an image against a folder.
    own_n = sizes[codes]
    multi = np.flatnonzero(own_n >= 2)
    own = np.full(n, np.nan)
    loo = sums[codes[multi]] - w[multi]
    own[multi] = np.einsum("ij,ij->i", w[multi], loo) / np.maximum(
        np.linalg.norm(loo, axis=1), 1e-12
    )
    same = models.same
    out: list[Suggestion] = []

    # -- same person ---------------------------------------------------------------------
    multi_f = np.flatnonzero(sizes >= 2)
    bar = nulls.pooled_folder.loc + CANDIDATE_Z * nulls.pooled_folder.scale
    near_r, near_c = above(cn[multi_f], cn, bar, exclude=multi_f)
    fa = np.concatenate([codes[src], multi_f[near_r]])
    fb = np.concatenate([codes[dst], near_c])
    if len(fa):
        key = np.unique(np.minimum(fa, fb).astype(np.int64) * n_f + np.maximum(fa, fb))
        a, b = key // n_f, key % n_f
        key = key[a != b]
        a, b = key // n_f, key % n_f
        x = np.einsum("ij,ij->i", cn[a], cn[b])
        null = np.empty(len(a))
        genuine = np.empty(len(a))
        n_cls = len(SIZE_EDGES)
        pair_cls = np.minimum(cls[a], cls[b]) * n_cls + np.maximum(cls[a], cls[b])
        for pc in np.unique(pair_cls).tolist():
            ca, cb = divmod(pc, n_cls)
            sel = pair_cls == pc
            null[sel] = nulls.folder_tail(ca, cb).pdf(x[sel])
            genuine[sel] = same(ca, cb)(x[sel])
        ratio = genuine / np.maximum(null, 1e-300)
        conf = _odds_to_probability(ratio * SPLIT_RATE / n_f)
        for j in np.flatnonzero(conf >= MIN_CONFIDENCE):
            out.append(
                Suggestion(
                    "same_person", float(conf[j]), int(a[j]), int(b[j]), -1, float(x[j]),
                    images=int(sizes[a[j]] + sizes[b[j]]),
                )
            )

    # -- misfiled and stranger -----------------------------------------------------------
    # Likelihood ratio of "not this folder's person" from the image's own match.
    not_own = np.zeros(n)
    own_cls = size_class(np.maximum(own_n - 1, 1))
    for c in np.unique(own_cls[multi]).tolist():
        sel = multi[own_cls[multi] == c]
        not_own[sel] = nulls.image_body.pdf(own[sel]) / same(0, c)(own[sel])
    best = np.zeros(n)
    best_dest = np.full(n, -1)
    best_x = np.zeros(n)
    is_multi = own_n >= 2
    m = is_multi[src]
    # Only an image that fits its own folder poorly can be misfiled: only those look
    # beyond their stored matches (most images fit their folder).
    loose = multi[not_own[multi] >= LOOSE_RATIO]
    bar = nulls.pooled_image.loc + CANDIDATE_Z * nulls.pooled_image.scale
    im_r, im_c = above(w[loose], cn, bar, exclude=codes[loose])
    s = np.concatenate([src[m], loose[im_r]])
    dest = np.concatenate([codes[dst[m]], im_c])
    if len(s):
        key = np.unique(s.astype(np.int64) * n_f + dest)
        s_u, d_u = key // n_f, key % n_f
        x = np.einsum("ij,ij->i", w[s_u], cn[d_u])
        null = np.empty(len(s_u))
        genuine = np.empty(len(s_u))
        for c in np.unique(cls[d_u]).tolist():
            sel = cls[d_u] == c
            null[sel] = nulls.image_tail(c).pdf(x[sel])
            genuine[sel] = same(0, c)(x[sel])
        ratio = not_own[s_u] * genuine / np.maximum(null, 1e-300)
        conf = _odds_to_probability(ratio * MISFILED_RATE / n_f)
        order = np.argsort(conf)  # each image's best destination is written last
        best[s_u[order]] = conf[order]
        best_dest[s_u[order]] = d_u[order]
        best_x[s_u[order]] = x[order]
    p_stranger = _odds_to_probability(not_own * STRANGER_RATE)
    # In a folder of two that do not match, the evidence is the same for both: each is
    # the stranger with half the probability, and one suggestion says it (the image that
    # comes closer to some other folder: more likely filed from elsewhere).
    pairs2 = multi[own_n[multi] == 2]
    if len(pairs2):
        p_stranger[pairs2] *= 0.5
        order = pairs2[np.lexsort((-best_x[pairs2], codes[pairs2]))]
        second = np.r_[False, codes[order][1:] == codes[order][:-1]]
        p_stranger[order[second]] = 0.0
    for i in multi[(best[multi] >= MIN_CONFIDENCE) | (p_stranger[multi] >= MIN_CONFIDENCE)]:
        if best[i] >= MIN_CONFIDENCE and best[i] >= p_stranger[i]:
            out.append(
                Suggestion(
                    "misfiled", float(best[i]), int(codes[i]), int(best_dest[i]), int(i),
                    float(best_x[i]), float(own[i]), int(own_n[i] + sizes[best_dest[i]]),
                )
            )
        elif p_stranger[i] >= MIN_CONFIDENCE:
            out.append(
                Suggestion(
                    "stranger", float(p_stranger[i]), int(codes[i]), -1, int(i),
                    float(own[i]), float(own[i]), int(own_n[i]),
                )
            )
    return out, models
