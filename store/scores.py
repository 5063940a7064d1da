"""The calibrated score: how a raw cosine maps to the score users see and filter on.

The map is piecewise linear through (-1, -1), (zero_cos, 0), (anchor_cos, anchor_score),
(1, 1): monotone, so the model's own ranking is kept. The daemon estimates the knots from
the user's data (daemon/calibration.py); the store keeps them with the embeddings, with
what they mean: the fitted tail of different people's cosines (expected false matches
per image at any score) and the share of one person's pairs at or above the anchor.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

ANCHOR_SCORE = 0.4
# The lowest score kept by default (settings' `threshold`): the score the calibration
# anchors, about 0.1 expected false matches per image (docs/design.md, "Scores").
DEFAULT_THRESHOLD = ANCHOR_SCORE


@dataclass(frozen=True)
class Calibration:
    kind: str  # tail (estimated) | prior (too little data) | identity (no rescaling)
    zero_cos: float
    anchor_cos: float
    anchor_score: float = ANCHOR_SCORE
    false_rate: float | None = None  # kept for stores of schema 1
    samples: int = 0
    images: int = 0
    # Normal upper tail of different people's raw cosine: P(c' >= c) = Q((c - loc)/scale).
    tail_loc: float | None = None
    tail_scale: float | None = None
    # Images each image is compared with (those outside its own folder).
    cross: float | None = None
    # Share of same-folder pairs at or above anchor_cos, and how many pairs said so.
    recall: float | None = None
    genuine_samples: int = 0

    def with_recall(self, recall: float | None, samples: int) -> Calibration:
        return dataclasses.replace(self, recall=recall, genuine_samples=samples)

    def _knots(self) -> tuple[np.ndarray, np.ndarray]:
        xs = np.array([-1.0, self.zero_cos, self.anchor_cos, 1.0])
        ys = np.array([-1.0, 0.0, self.anchor_score, 1.0])
        return xs, ys

    def score(self, cosine: np.ndarray | float) -> np.ndarray:
        xs, ys = self._knots()
        return np.interp(np.asarray(cosine, dtype=np.float64), xs, ys)

    def cosine_for(self, score: float) -> float:
        """The raw cosine at which `score` is reached (the inverse map)."""
        xs, ys = self._knots()
        return float(np.interp(score, ys, xs))

    def false_per_image(self, score: float) -> float | None:
        """Expected different-people matches per image at or above `score`."""
        if self.tail_loc is None or self.tail_scale is None or self.cross is None:
            return None
        z = (self.cosine_for(score) - self.tail_loc) / self.tail_scale
        return float(0.5 * math.erfc(z / math.sqrt(2.0)) * self.cross)

    def max_shift(self, other: Calibration) -> float:
        """Largest change of any pair's score between the two maps (maxima lie at knots)."""
        points = np.concatenate([self._knots()[0], other._knots()[0]])
        return float(np.max(np.abs(self.score(points) - other.score(points))))

    def sql_expression(self, column: str) -> str:
        """The same map as a SQL expression, so the store can rescore in place."""
        xs, ys = self._knots()
        parts = []
        for i in range(3):
            x0, x1, y0, y1 = (float(v) for v in (xs[i], xs[i + 1], ys[i], ys[i + 1]))
            slope = (y1 - y0) / (x1 - x0)
            parts.append(f"WHEN {column} <= {x1!r} THEN {y0!r} + ({column} - {x0!r}) * {slope!r}")
        return "CASE " + " ".join(parts) + " ELSE 1.0 END"
