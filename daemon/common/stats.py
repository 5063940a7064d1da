"""Statistics shared by the daemon's estimates (and light enough for the dashboard): a
normal fitted to the upper tail of a sample, and when a data set has changed enough for
the calibration to be estimated again.

Both the calibration (daemon/calibration.py: raw cosines of image pairs from different
folders) and the suggestions (daemon/kinds/stats.py: centroid cosines of folder pairs,
image-to-folder cosines) model "different people" by the same method: a straight line
through the sample's upper quantiles against the normal's, fitted by least squares on the
normal scale, and read beyond the sample. They differ only in where the fit stops, and
for a reason each (`calibration_tail`, `folder_tail`): the calibration's draws are nearly
all distinct image pairs, so its sample size says how far up the quantiles are sound;
the suggestions' draws repeat a few folder pairs many times, so what counts is how many
different pairs lie behind them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# The calibration is estimated again when the number of faces changed by more than this
# fraction: in between it holds, so scores stay put. (The suggestions' models are used
# again only for exactly the faces they were fitted on: daemon/kinds/stats.py.)
REESTIMATE_FRACTION = 0.01

_NORMAL = NormalDist()


def changed_past(n: int, old_n: int, fraction: float = REESTIMATE_FRACTION) -> bool:
    """Whether `n` faces differ from the `old_n` an estimate was made from by more than
    `fraction` of them (and by more than one): the estimate is due again."""
    return abs(n - old_n) > max(1, fraction * old_n)


@dataclass(frozen=True)
class Tail:
    """A normal fitted to the upper tail of a statistic among different people."""

    loc: float
    scale: float

    def pdf(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.loc) / self.scale
        return np.exp(-0.5 * z * z) / (self.scale * math.sqrt(2 * math.pi))


def fit_tail(sample: np.ndarray, lo: float, hi: float, points: int, min_scale: float) -> Tail:
    """loc + scale * z fitted by least squares to the sample's quantiles at
    p = 1 - 10^-e, for `points` exponents e evenly from `lo` to `hi` (1: the 90th
    percentile, 2: 1 in 100, ...); the scale never below `min_scale`."""
    ps = 1 - 10 ** -np.linspace(lo, hi, points)
    qs = np.quantile(sample, ps)
    zs = np.array([_NORMAL.inv_cdf(float(p)) for p in ps])
    scale, loc = np.polyfit(zs, qs, 1)
    return Tail(float(loc), float(max(scale, min_scale)))


def calibration_tail(sample: np.ndarray) -> Tail:
    """The calibration's fit (raw cosines of distinct cross-folder image pairs): from the
    90th percentile up to where ~30 sampled pairs remain above, but no further than 1 in
    300: beyond it real mistakes among the draws bend the curve upwards."""
    hi = min(2.5, math.log10(max(len(sample), 100) / 30))
    return fit_tail(sample, 1.0, max(1.3, hi), 12, 1e-4)


def folder_tail(sample: np.ndarray, distinct: float) -> Tail:
    """The suggestions' fit, `distinct`: how many different pairs the draws come from.

    The fit stops where ~20 of them remain above: past it, real mistakes among the draws
    (a split's folder pair is one of only 153 pairs of 18 folders) would pass for the tail
    of different people. With few pairs it starts at the median, for a stable line."""
    hi = min(3.0, math.log10(max(distinct, 1.0) / 20))
    lo = 1.0 if hi >= 2.0 else 0.3
    return fit_tail(sample, lo, max(hi, lo + 0.5), 10, 1e-3)
