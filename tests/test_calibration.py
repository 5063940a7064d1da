"""The calibrated score: monotone, anchored on the user's own cross-class pairs."""

from __future__ import annotations

import numpy as np

from daemon import calibration
from daemon.compare import normalise
from store.scores import Calibration


def test_score_is_monotone_and_hits_its_knots():
    cal = Calibration("quantile", 0.8, 0.9)
    xs = np.linspace(-1, 1, 2001)
    ys = cal.score(xs)
    assert np.all(np.diff(ys) > 0)
    assert cal.score(0.8) == 0.0 and abs(cal.score(0.9) - 0.4) < 1e-12
    assert cal.score(1.0) == 1.0 and cal.score(-1.0) == -1.0
    assert abs(cal.cosine_for(0.4) - 0.9) < 1e-12


def test_sql_expression_matches_numpy():
    import duckdb

    cal = Calibration("quantile", 0.83, 0.905)
    xs = np.linspace(-1, 1, 41)
    con = duckdb.connect()
    got = [
        con.execute(
            f"SELECT {cal.sql_expression('x')} FROM (SELECT ?::DOUBLE AS x)", [float(x)]
        ).fetchall()[0][0]
        for x in xs
    ]
    assert np.allclose(got, cal.score(xs))


def _population(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centre = rng.standard_normal(32)
    # People who all look alike (raw cosine ~0.8 between different people, like dlib),
    # four photos each around their own face.
    people = centre * 3 + rng.standard_normal((n // 4, 32))
    vec = normalise(np.repeat(people, 4, axis=0) + 0.35 * rng.standard_normal((n, 32)))
    return vec, np.arange(n) // 4


def _false_per_image(cal: Calibration, vec: np.ndarray, classes: np.ndarray) -> float:
    sims = vec @ vec.T
    cross = classes[:, None] != classes[None, :]
    return float((cal.score(sims[cross]) >= 0.4).sum()) / len(vec)


def test_estimate_admits_about_a_tenth_of_a_false_match_per_image():
    vec, classes = _population(2400)
    cal = calibration.estimate(vec, classes)
    assert cal.kind == "tail"
    assert 0.5 < cal.zero_cos < cal.anchor_cos < 1
    # Counted over every cross-folder pair (2.9 M), not a sample.
    measured = _false_per_image(cal, vec, classes)
    assert measured <= 0.3, measured
    predicted = cal.false_per_image(0.4)
    assert predicted is not None and abs(predicted - calibration.TARGET_FALSE_PER_IMAGE) < 1e-6
    # One person's pairs (same folder) mostly stay above the threshold here.
    assert cal.recall is not None and cal.recall > 0.9


def test_the_threshold_tightens_as_the_set_grows():
    small = calibration.estimate(*_population(400))
    large = calibration.estimate(*_population(4000))
    # 0.4 admits ~0.1 false matches per image at any size: with ten times the images,
    # a pair must be rarer among different people to reach it.
    assert large.anchor_cos > small.anchor_cos
    assert abs(large.false_per_image(0.4) - small.false_per_image(0.4)) < 1e-9


def test_a_calibrated_model_keeps_the_identity_map_and_never_loosens():
    vec, classes = _population(800)
    # Spread different people near 0, like ArcFace: 0.4 is already a rare cosine.
    rng = np.random.default_rng(1)
    arc = normalise(rng.standard_normal((800, 256)))
    cal = calibration.estimate(arc, classes, raw_is_score=True)
    assert cal.kind == "identity" and cal.zero_cos == 0.0 and cal.anchor_cos == 0.4
    # Where 0.4 admits too many (all look alike), it tightens instead.
    tight = calibration.estimate(vec, classes, raw_is_score=True)
    assert tight.anchor_cos > 0.4 and tight.zero_cos == 0.0


def test_too_little_data_uses_the_prior_and_shift_measures_change():
    vec = normalise(np.eye(4, 8))
    cal = calibration.estimate(vec, np.arange(4))
    assert cal.kind == "prior"
    other = Calibration("tail", cal.zero_cos, cal.anchor_cos + 0.01)
    assert cal.max_shift(cal) == 0
    assert 0.03 < cal.max_shift(other) < 0.1
    assert calibration.identity().score(0.3) == 0.3


def test_the_calibration_is_a_function_of_the_data_not_of_the_order_it_came_in():
    # Past 1,414 faces the cross-folder pairs are sampled, not all taken: the draws must
    # name the same faces however the files are numbered (issue: a fresh scan and an
    # incremental build of the same files gave different confidences).
    vec, classes = _population(2400)
    keys = [f"{i:08x}" for i in range(len(vec))]
    perm = np.random.default_rng(7).permutation(len(vec))
    first = calibration.estimate(vec, classes, keys=keys)
    shuffled = calibration.estimate(vec[perm], classes[perm], keys=[keys[i] for i in perm])
    assert first.samples == calibration.MAX_SAMPLES or first.samples > 0
    assert first == shuffled
    # Different content is a different draw: the seed does follow the data.
    other = calibration.estimate(vec, classes, keys=[k + "x" for k in keys])
    assert other.tail_loc != first.tail_loc
