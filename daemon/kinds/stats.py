"""The statistics every suggestion kind reads: the data's own models of one person and of
different people, and each run's centred faces, folder centroids and per-image matches.

Everything here works on *centred* faces: the mean face of the data set (the data's own,
docs/design.md) is subtracted from every unit vector, so what two faces share because
they are faces cancels and what they share because they are one person remains. A
folder is its centroid (the normalised mean of its centred faces): averaging cancels
each photo's pose and light, so a folder of eight photos of one man points at him far
more sharply than any single photo.

Each suggestion gets a confidence in [0, 1] on one scale for all kinds: the probability
that it is a real mistake, as prior odds times a likelihood ratio, both read off the data.
"Different people" is a normal fitted to the upper tail of a statistic over random
folder pairs (or image-folder pairs) of the same sizes: nearly all of them are different
people (daemon/common/stats.py). "One person" is the density of the statistic between
two disjoint groups of those sizes drawn inside folders: folders are mostly right. Each
kind's own test, prior and words are in its module (daemon/kinds/<kind>.py); what two
kinds share is here:

- `Statistics.not_own`: the likelihood ratio that an image is not its folder's person,
  from how well it matches the rest of its folder (its leave-one-out centroid): the body
  of unrelated image-folder matches against the density of every image's match to its
  own folder (misfiled and stranger read it).
- `Statistics.claims`: for each image, the other folder most likely to be its own and how
  likely (misfiled proposes it; stranger breaks a tie in a folder of two with it).

The draws are a function of the data alone, never of file ids or of history: the faces
come in a content order (folder, then content hash: daemon/common/content.py), every draw is
seeded from the content it draws over (`content_seed`) and from its own name, and a
kept model is used again only for exactly the faces it was fitted on (`Models.fits`).
The same files give the same suggestions and confidences however they arrived.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from daemon.common.stats import Tail, folder_tail
from daemon.index.centroids import above_indexed
from store.suggestions import CONFIDENCE_FLOOR
from store.vectors import group_sums, row_norms
from store.vocab import Kind

# Prior odds that an image was filed from another folder: scraped sets are mostly right,
# about one image in a hundred carries another folder's name (one of F). The other
# kinds' priors are in their modules.
MISFILED_RATE = 0.01
# Suggestions below this confidence are not kept: the queue would only grow (the store
# names the floor: the Review page's filter starts there).
MIN_CONFIDENCE = CONFIDENCE_FLOOR
# Folder-size classes (by images): the null tail is fitted per class where it has data.
SIZE_EDGES = np.array([1, 2, 3, 5, 9, 17])
# Random draws per size class for the null tail, and the fewest for a class of its own.
NULL_SAMPLES = 8_000
MIN_CLASS_SAMPLES = 2_000
# Fewer folders than this and there is no model of different people to test against.
MIN_FOLDERS = 5
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
# The draws' names, so that each has a stream of its own (`draws`).
NULL_DRAWS = 1
SAME_DRAWS = 2
DIFF_DRAWS = 3
# A folder is examined as a mixture of people (docs/design.md, "Mixed folders") from
# this many images, when at least two of them fit it loosely or match one other folder;
# a group of people inside it has at least MIN_GROUP images (one odd image is a misfile
# or a stranger, not a group).
MIN_MIXED = 4
MIN_GROUP = 2
# Two groups of one folder are kept apart when their centroids are at least this much
# likelier for different people (groups drawn from two folders) than for one person
# (groups drawn inside one folder).
SPLIT_RATIO = 1.0
# A group apart from the folder's own person is foreign when another folder's own person
# claims it (and not the folder's own person too: that is a split, same_person's), or,
# claimed by none, when at these prior odds it is more likely another person than the
# own one: agglomeration picks the split that separates best, which makes any folder
# look somewhat divided.
FOREIGN_ODDS = 0.05
# Prior odds that a folder holds a group of another folder's person (one of F), and that
# a foreign group matches no folder at all.
MIXED_RATE = 0.05
UNKNOWN_RATE = 0.01
# A group of a folder found divided is claimed by another folder when its posterior of
# being that folder's person reaches one half, at prior odds CLAIM_ODDS, one of F: one
# of the folder's groups came from somewhere, and about half of such people have a
# folder of their own. The closest CLAIM_CANDIDATES folders by centroid are weighed.
CLAIM_ODDS = 0.5
CLAIM_CANDIDATES = 5
# A claimed group is not foreign when the folder's own person is itself that folder's
# person at a twentieth of the claim's odds: in a real mixture the own person is nothing
# like the destination's (the planted namesakes and swaps stayed under 1 % of the claim
# bar, dlib on LFW and East Asian faces), while a split folder that agglomeration divides
# (one person, a weak model) leaves its own part near the bar.
OWN_THERE = 0.05
# Cross-folder group pairs drawn per redraw for the different-people densities, from at
# most DIFF_FOLDERS folders (the draws' cost stays flat in N).
DIFF_SAMPLES = 2_000
DIFF_REDRAWS = 4
DIFF_FOLDERS = 400
# The one-person densities split at most this many folders (a seeded choice past it):
# at 1 M faces / 50,000 folders, splitting every folder cost 3.8 of the queue step's
# 29 CPU-s, and with 4,000 the suggestions' confidences moved in the sixth digit.
SAME_FOLDERS = 4_000


@dataclass
class Found:
    """A suggestion as the statistics find it, in folder codes and file indices; its
    kind's module says it in the store's keys and in words (daemon/kinds/base.py)."""

    kind: Kind
    confidence: float
    folder_a: int  # folder code: same_person either folder; misfiled/stranger the image's
    folder_b: int  # same_person the other; misfiled the proposed destination; else -1
    image: int  # file index for misfiled/stranger, -1 for same_person
    stat: float  # centroid (or image-to-centroid) cosine, centred
    own: float = float("nan")  # misfiled/stranger: the image against the rest of its folder
    images: int = 0  # images involved (both folders)
    group: tuple[int, ...] = ()  # mixed: the foreign group's file indices


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


def draws(seed: int, *name: int) -> np.random.Generator:
    """The random stream of one draw: its data's seed and its own name, so that a draw
    does not depend on which draws ran before it (the kinds ask for the one-person
    densities lazily, in whatever order their tests need them)."""
    return np.random.default_rng([seed, *name])


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(row_norms(x)[:, None], 1e-12)


def centre(unit: np.ndarray) -> np.ndarray:
    w = unit - unit.mean(axis=0, keepdims=True)
    # In place: one N × d array, not two (the same quotients).
    w /= np.maximum(row_norms(w)[:, None], 1e-12)
    return w


def size_class(sizes: np.ndarray | int) -> np.ndarray:
    return np.searchsorted(SIZE_EDGES, sizes, side="right") - 1


def _robust_sd(x: np.ndarray) -> float:
    q25, q75 = np.quantile(x, [0.25, 0.75])
    return max(float(q75 - q25) / 1.349, 1e-3)


class Nulls:
    """The statistics among unrelated folders (random draws: nearly all are different
    people), by size class where a class has enough data, pooled otherwise."""

    def __init__(
        self,
        cn: np.ndarray,
        w: np.ndarray,
        codes: np.ndarray,
        sizes: np.ndarray,
        rng: np.random.Generator,
    ):
        n_f, n = len(cn), len(w)
        cls = size_class(sizes)
        n_cls = len(SIZE_EDGES)
        by_class = [np.flatnonzero(cls == c) for c in range(n_cls)]
        a = rng.integers(0, n_f, NULL_SAMPLES * 4)
        b = rng.integers(0, n_f, NULL_SAMPLES * 4)
        keep = a != b
        self.pooled_folder = folder_tail(
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
                self.folder[(ca, cb)] = folder_tail(
                    np.einsum("ij,ij->i", cn[x[ok]], cn[y[ok]]), len(fa) * len(fb)
                )
        i = rng.integers(0, n, NULL_SAMPLES * 4)
        f = rng.integers(0, n_f, NULL_SAMPLES * 4)
        ok = codes[i] != f
        x = np.einsum("ij,ij->i", w[i[ok]], cn[f[ok]])
        self.pooled_image = folder_tail(x, n * (n_f - 1))
        # The body (not the tail) of an image against an unrelated folder: how a
        # stranger matches the folder it sits in.
        self.image_body = Tail(float(np.median(x)), _robust_sd(x))
        self.image: dict[int, Tail] = {}
        x_cls = cls[f[ok]]
        for c in range(n_cls):
            if (x_cls == c).sum() >= MIN_CLASS_SAMPLES:
                self.image[c] = folder_tail(x[x_cls == c], n * len(by_class[c]))

    def folder_tail(self, ca: int, cb: int) -> Tail:
        return self.folder.get((min(ca, cb), max(ca, cb)), self.pooled_folder)

    def image_tail(self, c: int) -> Tail:
        return self.image.get(c, self.pooled_image)


def odds_to_probability(odds: np.ndarray) -> np.ndarray:
    odds = np.asarray(odds, np.float64)
    return odds / (1.0 + odds)


def shuffled_by_folder(r: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """np.lexsort((r, codes)) for uniform draws `r` (multiples of 2^-53, as NumPy's
    generators make them): each folder's faces in the order of their draws. One sort of
    one integer key (the code above the draw's leading bits) is a tenth of the lexsort
    at 1 M faces; where two keys tie (the draws agree in those bits) the lexsort says."""
    if len(r) < 2 or codes.min() < 0:
        return np.lexsort((r, codes))
    code_bits = int(codes.max()).bit_length()
    draw_bits = min(53, 64 - code_bits)
    if draw_bits < 24:
        return np.lexsort((r, codes))
    k = (r * 2.0**53).astype(np.uint64) >> np.uint64(53 - draw_bits)
    key = (codes.astype(np.uint64) << np.uint64(draw_bits)) | k
    order = np.argsort(key, kind="stable")
    ranked = key[order]
    if (ranked[1:] == ranked[:-1]).any():
        return np.lexsort((r, codes))
    return order


def _split_samples(
    w: np.ndarray,
    codes: np.ndarray,
    sizes: np.ndarray,
    sa: int,
    sb: int,
    rng: np.random.Generator,
    want: int = 0,
) -> np.ndarray:
    """Centroid cosines of two disjoint random groups of `sa` and `sb` images of one
    folder, for every folder large enough (drawn again, up to `want` values, when there
    are few such folders): what the statistic of a folder pair (or of an image and a
    folder, sa = 1) of those sizes looks like when both are one person."""
    eligible = np.flatnonzero(sizes >= sa + sb)
    if len(eligible) > SAME_FOLDERS:
        # Past SAME_FOLDERS folders, a seeded choice of them, so that the draw's cost
        # stays flat in N (below it, every folder, as before).
        eligible = rng.choice(eligible, SAME_FOLDERS, replace=False)
    chosen = np.zeros(len(sizes), bool)
    chosen[eligible] = True
    members = np.flatnonzero(chosen[codes])
    if len(members) == 0:
        return np.empty(0)
    of_member = codes[members]
    grouped = bool((np.diff(of_member) >= 0).all())
    folders = (
        1 + int(np.count_nonzero(np.diff(of_member))) if grouped else len(np.unique(of_member))
    )
    if grouped:
        # A shuffle within folders leaves each folder's run where it is: the runs and
        # each face's rank in its run are the same for every draw.
        starts = np.flatnonzero(np.r_[True, of_member[1:] != of_member[:-1]])
        rank = np.arange(len(members)) - np.repeat(starts, np.diff(np.r_[starts, len(members)]))
        in_a, in_b = rank < sa, (rank >= sa) & (rank < sa + sb)
    out = []
    for _ in range(max(1, min(MAX_REDRAWS, -(-want // folders)))):
        order = members[shuffled_by_folder(rng.random(len(members)), of_member)]
        if not grouped:
            c = codes[order]
            starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
            rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
            in_a, in_b = rank < sa, (rank >= sa) & (rank < sa + sb)
        # Every folder here gives exactly sa and sb faces, one folder after another: each
        # group's sum is a reshaped sum (a tenth of the time of group_sums).
        a = w[order[in_a]].reshape(folders, sa, -1).sum(axis=1)
        b = w[order[in_b]].reshape(folders, sb, -1).sum(axis=1)
        na, nb = row_norms(a), row_norms(b)
        out.append(np.einsum("ij,ij->i", a, b) / np.maximum(na * nb, 1e-12))
    return np.concatenate(out)


class SameDensities:
    """Densities of the statistics when both sides are one person, by size class: read
    off disjoint groups inside folders (folders are mostly right), pooled over larger
    classes where a class has too few folders to say."""

    def __init__(self, w: np.ndarray, codes: np.ndarray, sizes: np.ndarray, seed: int):
        self._w, self._codes, self._sizes, self._seed = w, codes, sizes, seed
        self._cache: dict[tuple[int, int], Density] = {}

    def _sample(self, sa: int, sb: int, want: int) -> np.ndarray:
        rng = draws(self._seed, SAME_DRAWS, sa, sb)
        return _split_samples(self._w, self._codes, self._sizes, sa, sb, rng, want)

    def __call__(self, ca: int, cb: int) -> Density:
        key = (min(ca, cb), max(ca, cb))
        if key not in self._cache:
            sa, sb = int(SIZE_EDGES[key[0]]), int(SIZE_EDGES[key[1]])
            want = MIN_SAME_SAMPLES * 4
            sample = self._sample(sa, sb, want)
            # Too few folders hold sa + sb images: smaller groups stand in (their
            # statistic is noisier, so this errs towards less confidence, not more).
            while len(sample) < MIN_SAME_SAMPLES and sb > 1:
                sb = max(1, sb // 2)
                if sa > sb:
                    sa = sb
                sample = self._sample(sa, sb, want)
            self._cache[key] = Density(sample)
        return self._cache[key]


def _group_draw(
    w: np.ndarray, codes: np.ndarray, sizes: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random group of `size` images from each of at most DIFF_FOLDERS folders that
    hold that many: (their folder codes, the groups' unit centroids)."""
    eligible = np.flatnonzero(sizes >= size)
    if len(eligible) > DIFF_FOLDERS:
        eligible = np.sort(rng.choice(eligible, DIFF_FOLDERS, replace=False))
    if len(eligible) == 0:
        return eligible, np.empty((0, w.shape[1]), w.dtype)
    chosen = np.zeros(len(sizes), bool)
    chosen[eligible] = True
    members = np.flatnonzero(chosen[codes])
    order = members[shuffled_by_folder(rng.random(len(members)), codes[members])]
    c = codes[order]
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    sums = w[order[rank < size]].reshape(len(eligible), size, -1).sum(axis=1)
    return eligible, _unit_rows(sums)


class DiffDensities:
    """Densities of the centroid cosine of two groups of different people, by size
    class: each group drawn inside one folder, the two from different folders. The
    mixtures (`find_mixtures`) weigh a split of one folder against these and the
    one-person densities: the body of the distribution decides there, not its far tail,
    so a density of the same group sizes is the fair comparison."""

    def __init__(self, w: np.ndarray, codes: np.ndarray, sizes: np.ndarray, seed: int):
        self._w, self._codes, self._sizes, self._seed = w, codes, sizes, seed
        self._cache: dict[tuple[int, int], Density] = {}
        self._groups: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def _draw(self, size: int, redraw: int) -> tuple[np.ndarray, np.ndarray]:
        key = (size, redraw)
        if key not in self._groups:
            rng = draws(self._seed, DIFF_DRAWS, size, redraw)
            self._groups[key] = _group_draw(self._w, self._codes, self._sizes, size, rng)
        return self._groups[key]

    def _sample(self, sa: int, sb: int) -> np.ndarray:
        out = []
        for r in range(DIFF_REDRAWS):
            fa, ga = self._draw(sa, r)
            fb, gb = self._draw(sb, r + DIFF_REDRAWS)
            if len(fa) == 0 or len(fb) == 0 or len(np.union1d(fa, fb)) < 2:
                break
            rng = draws(self._seed, DIFF_DRAWS, sa, sb, r)
            x = rng.integers(0, len(fa), DIFF_SAMPLES)
            y = rng.integers(0, len(fb), DIFF_SAMPLES)
            ok = fa[x] != fb[y]
            out.append(np.einsum("ij,ij->i", ga[x[ok]], gb[y[ok]]))
        return np.concatenate(out) if out else np.empty(0)

    def __call__(self, ca: int, cb: int) -> Density:
        key = (min(ca, cb), max(ca, cb))
        if key not in self._cache:
            sa, sb = int(SIZE_EDGES[key[0]]), int(SIZE_EDGES[key[1]])
            sample = self._sample(sa, sb)
            # Too few folders hold that many images: smaller groups stand in, as for
            # the one-person densities.
            while len(sample) < MIN_SAME_SAMPLES and sb > 1:
                sb = max(1, sb // 2)
                sa = min(sa, sb)
                sample = self._sample(sa, sb)
            self._cache[key] = Density(sample)
        return self._cache[key]


def reach(bar: float, ratio: float, curves: list[tuple[Tail, Density]]) -> float:
    """The lowest statistic from `bar` up where one-person density over different-people
    tail can reach `ratio` for any (tail, density) of `curves`; inf where none can. Below
    it no candidate's likelihood ratio gets there, so none could become a suggestion, and
    a search need not look (at 50,000 folders the prior of one in F puts this near a
    centroid cosine of 0.46, where the plain bar of 1 in 1,000 is at 0.27 with 1.3 M
    pairs above it). A bound on each grid interval (the density is read linearly between
    grid points; the normal is lowest at an end of it), so nothing that can reach is cut;
    one interval past the grid, for cosines a rounding above 1."""
    step = Density.GRID[1] - Density.GRID[0]
    grid = np.r_[Density.GRID, Density.GRID[-1] + step]
    lowest = np.inf
    for tail, density in curves:
        gen, null = density(grid), tail.pdf(grid)
        bound = np.maximum(gen[:-1], gen[1:]) / np.maximum(np.minimum(null[:-1], null[1:]), 1e-300)
        at = np.flatnonzero((bound >= ratio) & (grid[1:] > bar))
        if len(at):
            lowest = min(lowest, max(bar, float(grid[at[0]])))
    return lowest


def above(
    q: np.ndarray,
    a: np.ndarray,
    bar: float,
    exclude: np.ndarray | None = None,
    chunk: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """(row of q, row of a) where their dot product reaches `bar`, skipping column
    exclude[row] (its own folder): a thresholded product, like the pair comparison; past
    a size, the same pairs through an index of `a` (daemon/index/centroids.py)."""
    found = above_indexed(q, a, bar, exclude)
    if found is not None:
        return found
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


@dataclass
class Models:
    """What the data says of one person and of different people, kept by a daemon
    between runs: a run whose faces did not change (a decision, a folder rename that
    keeps the folders' order) uses them again.

    Only then: models fitted on a set one face smaller are history, and would make the
    confidences depend on the order the files arrived in. Checking is exact and cheap:
    the seed (a digest of the folders and contents in content order), the codes, and
    `faces`, what else decides the vectors (the standing face of each image, or a digest
    of the centred faces where the caller cannot say). Fitting again costs ~0.2 s at
    57,637 faces. Between runs the models keep no vectors (`release`): a reuse binds the
    run's centred faces, equal to those they were fitted on, for the densities drawn
    later (at 1 M faces that copy was 0.5 GB held between refreshes)."""

    nulls: Nulls
    same: SameDensities
    diff: DiffDensities
    seed: int
    faces: bytes  # what decides the centred faces beyond seed and codes (`identity`)
    codes: bytes  # a digest of the folder codes (`codes_digest`)
    shape: tuple[int, ...] = ()

    def fits(self, seed: int, faces: bytes, codes: np.ndarray, shape: tuple[int, ...]) -> bool:
        """Whether a fresh fit on these faces would give exactly these models."""
        return (
            self.seed == seed
            and self.shape == shape
            and self.faces == faces
            and self.codes == codes_digest(codes)
        )

    def bind(self, w: np.ndarray) -> None:
        """The centred faces the lazily drawn densities draw from (equal to the fitted)."""
        self.same._w = self.diff._w = w

    def release(self) -> None:
        """Let go of the vectors until the next run binds its own (`bind`)."""
        self.same._w = self.diff._w = None


def codes_digest(codes: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(codes, "<i8").tobytes(), digest_size=16).digest()


def identity(w: np.ndarray, standing: np.ndarray | None) -> bytes:
    """Models.faces: with the standing face of each image (a content's faces never
    change under a model, so contents and standing faces decide the vectors) those
    numbers; without them a digest of the centred faces themselves."""
    if standing is not None:
        return b"faces:" + np.ascontiguousarray(standing, "<i2").tobytes()
    return b"sha1:" + hashlib.sha1(np.ascontiguousarray(w), usedforsecurity=False).digest()


@dataclass(frozen=True)
class Claims:
    """Each image's most likely other folder: the probability that the image was filed
    from it (0 where no folder claims it), that folder's code (-1: none) and the image's
    cosine to its centroid."""

    confidence: np.ndarray
    folder: np.ndarray
    x: np.ndarray


class Statistics:
    """One run's view of the data, for the kinds' tests: centred faces, folder centroids
    and sizes, the models (made here when none fit), and what several kinds read.

    The faces come in content order (`content_order`) and `seed` is their
    `content_seed`: then every index a draw picks names the same face in every build of
    the same files. The one-person densities are drawn on first use (SameDensities),
    each from a stream of its own, so the order the kinds ask in changes nothing;
    `not_own` and `claims` are computed when first asked for."""

    def __init__(
        self,
        unit: np.ndarray,
        codes: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        models: Models | None,
        seed: int,
        standing: np.ndarray | None = None,
    ):
        """`standing`: the standing face's number of each image (in this order), where
        the caller knows them and the contents (`seed`) are content hashes."""
        n = len(unit)
        self.n = n
        self.codes, self.src, self.dst = codes, src, dst
        self.n_f = n_f = int(codes.max()) + 1
        self.w = w = centre(np.asarray(unit, np.float32))
        sums = group_sums(w, codes, n_f)
        sizes = np.bincount(codes, minlength=n_f)
        # The whole folders' centroids: what the models are fitted on (folders are mostly
        # one person) and where the mixtures start.
        self.cn_all = cn_all = _unit_rows(sums)
        faces = identity(w, standing)
        if models is not None and models.fits(seed, faces, codes, w.shape):
            models.bind(w)
        else:
            models = Models(
                Nulls(cn_all, w, codes, sizes, draws(seed, NULL_DRAWS)),
                SameDensities(w, codes, sizes, seed),
                DiffDensities(w, codes, sizes, seed),
                seed,
                faces,
                codes_digest(codes),
                w.shape,
            )
        self.models = models
        self.nulls = models.nulls
        self.same = models.same
        self.diff = models.diff
        self._measure(sums, sizes, np.ones(n, bool))
        self.mixtures = find_mixtures(self)
        # From here on a folder is its own person: every kind reads these.
        foreign = self.mixtures.foreign
        if foreign.any():
            keep = ~foreign
            sums = group_sums(w[keep], codes[keep], n_f)
            sizes = np.bincount(codes[keep], minlength=n_f)
            self._measure(sums, sizes, keep)
        self.grouped = self.mixtures.grouped

    def _measure(self, sums: np.ndarray, sizes: np.ndarray, member: np.ndarray) -> None:
        """Centroids and sizes of the folders' people (`member`: the faces counted in
        them), and how each image matches its folder's: a member against the rest of
        it, any other face against all of it."""
        w, codes, n = self.w, self.codes, self.n
        self.sums, self.sizes = sums, sizes
        self.cn = _unit_rows(sums)
        self.cls = size_class(sizes)
        # How an image matches the rest of its own folder: mostly right, so this is the
        # same-person density of an image against a folder.
        self.own_n = own_n = sizes[codes] + (~member)
        self.multi = multi = np.flatnonzero(own_n >= 2)
        own = np.full(n, np.nan)
        # The rest of its folder: the sum less the image itself where it is counted in
        # it (the same differences as sums - w·member, without two more N × d arrays).
        wm = w if len(multi) == n else w[multi]
        loo = sums[codes[multi]]
        counted = member[multi]
        if counted.all():
            loo -= wm
        else:
            loo[counted] -= wm[counted]
        own[multi] = np.einsum("ij,ij->i", wm, loo) / np.maximum(row_norms(loo), 1e-12)
        self.own = own
        self.__dict__.pop("not_own", None)
        self.__dict__.pop("claims", None)

    @cached_property
    def not_own(self) -> np.ndarray:
        """Likelihood ratio of "not this folder's person" from the image's own match."""
        multi, own = self.multi, self.own
        not_own = np.zeros(self.n)
        own_cls = size_class(np.maximum(self.own_n - 1, 1))
        for c in np.unique(own_cls[multi]).tolist():
            sel = multi[own_cls[multi] == c]
            not_own[sel] = self.nulls.image_body.pdf(own[sel]) / self.same(0, c)(own[sel])
        return not_own

    @cached_property
    def claims(self) -> Claims:
        """Against the folders its stored matches name, and (for an image that fits its
        own folder poorly) every folder different people rarely reach."""
        n, n_f, w, cn, codes = self.n, self.n_f, self.w, self.cn, self.codes
        src, dst, multi, nulls = self.src, self.dst, self.multi, self.nulls
        not_own = self.not_own
        best = np.zeros(n)
        best_dest = np.full(n, -1)
        best_x = np.zeros(n)
        is_multi = self.own_n >= 2
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
            for c in np.unique(self.cls[d_u]).tolist():
                sel = self.cls[d_u] == c
                null[sel] = nulls.image_tail(c).pdf(x[sel])
                genuine[sel] = self.same(0, c)(x[sel])
            ratio = not_own[s_u] * genuine / np.maximum(null, 1e-300)
            conf = odds_to_probability(ratio * MISFILED_RATE / n_f)
            # Each image's best destination is written last (on a tie, the later folder).
            order = np.argsort(conf, kind="stable")
            best[s_u[order]] = conf[order]
            best_dest[s_u[order]] = d_u[order]
            best_x[s_u[order]] = x[order]
        return Claims(best, best_dest, best_x)


@dataclass(frozen=True)
class Group:
    """A foreign group: images of one folder that are another person than the folder's
    own (its largest unclaimed group), with the folder whose own person it matches."""

    folder: int  # folder code
    members: np.ndarray  # face indices, ascending
    dest: int  # the folder code whose own person it is (-1: none matches)
    confidence: float
    x_own: float  # centroid cosine to the folder's own person
    x_dest: float  # ... to the destination's own person (nan: none)


@dataclass(frozen=True)
class Mixtures:
    """The folders found to hold several people: their foreign groups, the faces kept
    out of the own-person centroids (`foreign`), and the faces of the groups a `mixed`
    suggestion stands for (`grouped`: no image suggestion of their own)."""

    groups: list[Group]
    foreign: np.ndarray
    grouped: np.ndarray


class _Apart:
    """The likelihood ratio "different people" of two groups of given size classes at a
    centroid cosine: the different-people density over the one-person one, read off
    their grid once per size-class pair (the agglomeration asks at every step), and
    made non-increasing in the cosine: groups further apart are never likelier one
    person."""

    STEP = Density.GRID[1] - Density.GRID[0]

    def __init__(self, stats: Statistics):
        self._stats = stats
        self._ratio: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, ca: int, cb: int, x: float) -> float:
        key = (min(ca, cb), max(ca, cb))
        ratio = self._ratio.get(key)
        if ratio is None:
            diff, same = self._stats.diff(*key), self._stats.same(*key)
            d, s = diff(Density.GRID), same(Density.GRID)
            r = d / s
            # Where neither density has data both sit at their floor, and their ratio
            # (1) says nothing: between two points with data the log-ratio is
            # interpolated (the gap between the two people's and the one person's
            # cosines, which a strong model leaves wide), past the ends it stays.
            data = np.flatnonzero((d > diff.floor) | (s > same.floor))
            if len(data):
                grid = np.arange(len(r))
                r = np.exp(np.interp(grid, data, np.log(r[data])))
            ratio = self._ratio[key] = np.maximum.accumulate(r[::-1])[::-1]
        # Clamped in Python: the agglomeration asks ~30,000 times at 1 M faces, and
        # np.clip on one number cost more than the rest of the call.
        at = round((x + 1.0) / self.STEP)
        return float(ratio[min(max(at, 0), len(ratio) - 1)])


def _agglomerate(stats: Statistics, idx: np.ndarray, apart: _Apart) -> list[np.ndarray]:
    """The folder's images (`idx`) in groups, by centroid linkage: the two closest group
    centroids merge while one person explains them better than two (SPLIT_RATIO).
    Returns the groups of MIN_GROUP or more images, largest first."""
    n = len(idx)
    w = stats.w[idx].astype(np.float64)
    # A group lives in its first member's row: the Gram matrix of group sums and their
    # cosines, a merged-away row at -inf. A merge adds one row and column to another and
    # recomputes one row of cosines; nothing is reallocated.
    gram = w @ w.T
    norms = np.sqrt(np.maximum(np.diag(gram), 1e-12))
    cos = gram / np.outer(norms, norms)
    np.fill_diagonal(cos, -np.inf)
    size = np.ones(n, np.int64)
    label = np.arange(n)
    classes = size_class(np.arange(n + 1))
    for _ in range(n - 1):
        a, b = sorted(divmod(int(np.argmax(cos)), n))
        x = float(cos[a, b])
        if x == -np.inf or apart(int(classes[size[a]]), int(classes[size[b]]), x) >= SPLIT_RATIO:
            break
        gram[a] += gram[b]
        gram[:, a] += gram[:, b]
        norms[a] = np.sqrt(max(gram[a, a], 1e-12))
        size[a] += size[b]
        size[b] = 0
        row = gram[a] / (norms[a] * norms)
        row[size == 0] = -np.inf
        row[a] = -np.inf
        cos[a] = cos[:, a] = row
        cos[b] = cos[:, b] = -np.inf
        label[label == b] = a
    groups = [np.sort(idx[label == g]) for g in np.flatnonzero(size >= MIN_GROUP)]
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


def _match(
    stats: Statistics,
    centroid: np.ndarray,
    size: int,
    folder: int,
    cn: np.ndarray,
    own_sizes: np.ndarray,
    smaller: np.ndarray | None = None,
) -> tuple[int, float, float]:
    """The folder (not `folder`) whose own person a group most likely is: (its code or
    -1, the likelihood ratio, the centroid cosine). The closest CLAIM_CANDIDATES own
    people by centroid are weighed; folders marked in `smaller` only when their own
    person has at least as many images as the group."""
    x = cn @ centroid
    x[folder] = -np.inf
    if smaller is not None:
        x[smaller & (own_sizes < size)] = -np.inf
    best, best_lr, best_x = -1, 0.0, float("nan")
    for f in np.argsort(-x)[:CLAIM_CANDIDATES].tolist():
        if own_sizes[f] == 0 or not np.isfinite(x[f]):
            continue
        lr = _lr_against(stats, centroid, size, cn[f], int(own_sizes[f]))
        if lr > best_lr:
            best, best_lr, best_x = f, lr, float(x[f])
    return best, best_lr, best_x


def _lr_against(stats: Statistics, c: np.ndarray, size: int, c_f: np.ndarray, size_f: int) -> float:
    """The likelihood ratio that a group is folder f's own person (as `_match` weighs)."""
    cg, cf = int(size_class(size)), int(size_class(size_f))
    xs = np.array([float(c @ c_f)])
    null = float(stats.nulls.folder_tail(cg, cf).pdf(xs)[0])
    return float(stats.same(cg, cf)(xs)[0]) / max(null, 1e-300)


def find_mixtures(stats: Statistics) -> Mixtures:
    """Folders as mixtures of people (docs/design.md, "Mixed folders"): each candidate
    folder's images in groups (`_agglomerate`); the folder's own person is the group no
    other folder's own person claims (the largest when none or several are claimed);
    another group is foreign when it is clearly not the own person, and then matched
    against every folder's own person."""
    n, n_f, codes, w = stats.n, stats.n_f, stats.codes, stats.w
    foreign = np.zeros(n, bool)
    grouped = np.zeros(n, bool)
    sizes = stats.sizes
    big = sizes >= MIN_MIXED
    if n_f < 2 or not big.any():
        return Mixtures([], foreign, grouped)
    # Candidates, cheaply: two images that fit their folder loosely, or two that match
    # one other folder. Most folders are one person and never reach the loop below.
    loose = stats.not_own >= LOOSE_RATIO
    votes = np.bincount(codes[loose], minlength=n_f)
    if len(stats.src):
        seen = np.unique(stats.src.astype(np.int64) * n_f + codes[stats.dst])
        fa, fb = codes[seen // n_f], seen % n_f
        pair, count = np.unique(fa.astype(np.int64) * n_f + fb, return_counts=True)
        matched = np.zeros(n_f, bool)
        matched[pair[count >= MIN_GROUP] // n_f] = True
    else:
        matched = np.zeros(n_f, bool)
    candidates = np.flatnonzero(big & ((votes >= MIN_GROUP) | matched))
    if not len(candidates):
        return Mixtures([], foreign, grouped)
    starts = np.searchsorted(codes, np.arange(n_f + 1))
    split: dict[int, list[np.ndarray]] = {}
    apart = _Apart(stats)
    for f in candidates.tolist():
        parts = _agglomerate(stats, np.arange(starts[f], starts[f + 1]), apart)
        if len(parts) >= 2:
            split[f] = parts
    if not split:
        return Mixtures([], foreign, grouped)

    def centroid(idx: np.ndarray) -> np.ndarray:
        v = w[idx].sum(axis=0).astype(np.float64)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def own_people(own_of: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Every folder's own-person centroid and size, the split folders' own groups
        being `own_of`."""
        sums = stats.sums.astype(np.float64).copy()
        own_sizes = sizes.copy()
        for f, parts in split.items():
            for j, g in enumerate(parts):
                if j != own_of[f]:
                    sums[f] -= w[g].sum(axis=0)
                    own_sizes[f] -= len(g)
        return _unit_rows(sums), own_sizes

    def claimed(lr: float) -> bool:
        return lr * CLAIM_ODDS / n_f >= 1.0

    # Own people: the largest group first, then the largest group no other folder's
    # own person claims, against the others as they stand (twice: one folder's choice
    # moves what another's groups are claimed by). A divided folder claims no group
    # larger than its own person: when one person's photos sit in two divided folders,
    # the folder holding more of them is their home (else each folder's claim on the
    # other's would make neither the home).
    own_of = {f: 0 for f in split}
    divided = np.zeros(n_f, bool)
    divided[list(split)] = True
    for _ in range(2):
        cn, own_sizes = own_people(own_of)
        for f, parts in split.items():
            free = [
                j
                for j, g in enumerate(parts)
                if not claimed(_match(stats, centroid(g), len(g), f, cn, own_sizes, divided)[1])
            ]
            # The parts come largest first: the largest unclaimed one, else the largest.
            own_of[f] = free[0] if free else 0
    cn, own_sizes = own_people(own_of)
    groups: list[Group] = []
    for f, parts in split.items():
        others = [g for j, g in enumerate(parts) if j != own_of[f]]
        c_own = centroid(np.setdiff1d(np.arange(starts[f], starts[f + 1]), np.concatenate(others)))
        co = int(size_class(own_sizes[f : f + 1])[0])
        own_n = int(own_sizes[f])
        # Groups that one destination claims are one group: one card, one move.
        by_dest: dict[int, list[np.ndarray]] = {}
        for j, g in enumerate(others):
            cg = int(size_class(len(g)))
            ratio = apart(cg, co, float(centroid(g) @ c_own))
            dest, lr, _ = _match(stats, centroid(g), len(g), f, cn, own_sizes)
            if claimed(lr) and ratio >= SPLIT_RATIO:
                # Another folder's person, unless that folder is the own person too:
                # then the two folders are one person (same_person says so).
                own_there = _lr_against(stats, c_own, own_n, cn[dest], int(own_sizes[dest]))
                if own_there * CLAIM_ODDS / n_f < OWN_THERE:
                    by_dest.setdefault(dest, []).append(g)
            elif ratio * FOREIGN_ODDS >= 1 and len(g) < own_n:
                # Claimed by no folder, a group as large as the own person leaves
                # nothing to tell which of the two the folder is.
                by_dest.setdefault(-1 - j, []).append(g)
            # Otherwise not clearly another person: it stays with the own one.
        for key, gs in by_dest.items():
            g = np.sort(np.concatenate(gs))
            foreign[g] = True
            cg = int(size_class(np.array([len(g)]))[0])
            x_own = float(centroid(g) @ c_own)
            not_own = apart(cg, co, x_own)
            if key >= 0:
                dest, lr, x_dest = _match(stats, centroid(g), len(g), f, cn, own_sizes)
                odds = not_own * lr * MIXED_RATE / n_f
            else:
                dest, x_dest = -1, float("nan")
                odds = not_own * UNKNOWN_RATE
            conf = float(odds / (1.0 + odds))
            groups.append(Group(f, g, dest, conf, x_own, x_dest))
            if conf >= MIN_CONFIDENCE:
                grouped[g] = True
    return Mixtures(groups, foreign, grouped)
