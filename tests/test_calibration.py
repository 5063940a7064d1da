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


def test_estimate_puts_the_anchor_at_the_false_rate():
    rng = np.random.default_rng(0)
    centre = rng.standard_normal(32)
    # A population whose different people all look alike (raw cosine ~0.8, like dlib's).
    vec = normalise(centre * 3 + rng.standard_normal((400, 32)))
    classes = np.arange(400) // 4
    cal = calibration.estimate(vec, classes, false_rate=0.02)
    assert cal.kind == "quantile"
    sims = vec @ vec.T
    i, j = np.triu_indices(400, 1)
    cross = classes[i] != classes[j]
    rate = (cal.score(sims[i, j][cross]) >= 0.4).mean()
    assert 0.015 <= rate <= 0.025
    assert 0.5 < cal.zero_cos < cal.anchor_cos < 1


def test_too_little_data_uses_the_prior_and_shift_measures_change():
    vec = normalise(np.eye(4, 8))
    cal = calibration.estimate(vec, np.arange(4))
    assert cal.kind == "prior"
    other = Calibration("quantile", cal.zero_cos, cal.anchor_cos + 0.01)
    assert cal.max_shift(cal) == 0
    assert 0.03 < cal.max_shift(other) < 0.07
    assert calibration.identity().score(0.3) == 0.3
