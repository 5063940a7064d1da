"""How the review queue keeps its cost down at many folders without changing what it finds.

`reach` is where a folder pair could first reach the queue's floor: proven against the
ratio read densely, and shown to change no same_person suggestion on a set of 3,000
folders where it lifts the search's bar. The one-person densities split a seeded choice
of folders past SAME_FOLDERS, and every folder below it.
"""

from __future__ import annotations

import numpy as np
import pytest

from daemon.common.stats import Tail
from daemon.compare import normalise
from daemon.kinds import same_person, stats
from daemon.kinds.stats import Density, Statistics, reach


def test_reach_cuts_no_statistic_whose_ratio_gets_there_and_cuts_up_to_it() -> None:
    rng = np.random.default_rng(5)
    curves = [
        (Tail(0.0, 0.09), Density(rng.normal(0.8, 0.1, 500))),
        (Tail(0.05, 0.12), Density(rng.normal(0.55, 0.2, 60))),
        (Tail(0.02, 0.05), Density(rng.normal(0.3, 0.05, 5))),  # too few: flat 1.0
    ]
    bar = 0.27
    xs = np.linspace(bar, 1.0 + 1e-6, 400_001)
    ratios = [dens(xs) / np.maximum(tail.pdf(xs), 1e-300) for tail, dens in curves]
    step = Density.GRID[1] - Density.GRID[0]
    lifted = 0
    for ratio in (1e2, 1e4, 1e6, 1e9, 1e14):
        at = reach(bar, ratio, curves)
        reaching = [xs[r >= ratio] for r in ratios]
        lowest = min((float(x.min()) for x in reaching if len(x)), default=np.inf)
        assert at <= lowest  # nothing that reaches lies below it
        if np.isfinite(lowest):
            assert lowest - at <= 2 * step  # and it is not the bar whatever the ratio
        lifted += at > bar
    assert lifted >= 3
    assert reach(bar, 1e300, curves) == np.inf


def _folders(n_folders: int, per: int, d: int, twins: int, seed: int = 0):
    """Centred-looking faces of n_folders people, `per` each, in folder order; the last
    `twins` folders hold the same people as the first `twins` (a split each)."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((n_folders, d)).astype(np.float32))
    centres[-twins:] = centres[:twins]
    codes = np.repeat(np.arange(n_folders), per)
    unit = normalise(centres[codes] + (0.8 / np.sqrt(d)) * rng.standard_normal((len(codes), d)))
    return unit.astype(np.float32), codes


def test_the_lifted_bar_changes_no_same_person_suggestion(monkeypatch: pytest.MonkeyPatch) -> None:
    unit, codes = _folders(3000, 6, 24, twins=5)
    empty = np.empty(0, np.int64)
    plain_bars: list[float] = []
    lifted_bars: list[float] = []

    def found(keep_plain: bool) -> list[tuple[int, int, float]]:
        def at_bar(bar: float, ratio: float, curves: list) -> float:
            lifted = reach(bar, ratio, curves)
            plain_bars.append(bar)
            lifted_bars.append(lifted)
            return bar if keep_plain else lifted

        monkeypatch.setattr(same_person, "reach", at_bar)
        s = Statistics(unit, codes, empty, empty, None, seed=7)
        return sorted(
            (f.folder_a, f.folder_b, round(f.confidence, 12)) for f in same_person.KIND.find(s)
        )

    plain, lifted = found(True), found(False)
    assert lifted == plain
    assert {(a, b) for a, b, _ in lifted} >= {(f, 3000 - 5 + f) for f in range(5)}
    assert lifted_bars[-1] > plain_bars[-1] + 0.05  # the bound did lift the search


def test_one_person_densities_split_a_seeded_choice_of_folders_past_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unit, codes = _folders(300, 4, 16, twins=1)
    sizes = np.bincount(codes)

    def draw(seed: int) -> np.ndarray:
        return stats._split_samples(unit, codes, sizes, 2, 2, np.random.default_rng(seed))

    assert len(draw(1)) == 300  # every folder, below the cap
    monkeypatch.setattr(stats, "SAME_FOLDERS", 120)
    assert len(draw(1)) == 120
    assert np.array_equal(draw(1), draw(1)) and not np.array_equal(draw(1), draw(2))
