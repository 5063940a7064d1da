"""How well the default threshold separates people on the dev faces (manifest.csv)."""

from __future__ import annotations

import csv

import duckdb
import numpy as np

from daemon.compare import normalise
from store import catalog, matches
from tests.conftest import DEV_FACES


def test_default_threshold_separates_people_and_finds_the_planted_mistake(scanned_dev):
    _, db = scanned_dev
    identity = {
        r["relpath"]: r["identity"]
        for r in csv.DictReader((DEV_FACES / "manifest.csv").open(encoding="utf-8"))
    }
    con = duckdb.connect(str(db), read_only=True)
    try:
        model = catalog.get_meta(con, "model")
        assert model
        vec = catalog.load_vectors(con, model)
        cal = matches.load_calibration(con, model)
        paths = dict(con.execute("SELECT id, path FROM files").fetchall())
        top = con.execute(
            "SELECT class_a, class_b FROM pairs ORDER BY score DESC LIMIT 10"
        ).fetchall()
    finally:
        con.close()
    assert cal is not None
    who = np.array([identity[paths[i]] for i in vec.ids])
    assert "" not in who  # the no-face image has no embedding
    unit = normalise(vec.vectors)
    scores = cal.score(unit @ unit.T)
    i, j = np.triu_indices(len(unit), 1)
    same = who[i] == who[j]
    same_rate = float((scores[i, j][same] >= 0.4).mean())
    diff_rate = float((scores[i, j][~same] >= 0.4).mean())
    print(
        f"same-identity pairs >= 0.4: {same_rate:.1%} of {same.sum()}; "
        f"different-identity pairs >= 0.4: {diff_rate:.2%} of {(~same).sum()}"
    )
    assert same_rate >= 0.95
    assert diff_rate <= 0.02
    # The planted mistake tops the review queue.
    biden = {("Joe_Biden", "Joseph_Biden")}
    assert all((a, b) in biden for a, b in top[:5])
    assert sum((a, b) in biden for a, b in top) >= 8


def test_score_keeps_the_raw_cosine_order(scanned_dev):
    _, db = scanned_dev
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT cosine, score FROM pairs ORDER BY cosine").fetchall()
    finally:
        con.close()
    scores = [s for _, s in rows]
    assert scores == sorted(scores)
    assert all(s >= 0.4 - 1e-6 for s in scores)
