"""The review queue of mistakes on real faces: splits, misfiles, duplicates, and decisions
that survive rescans, restarts and renames."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np

from daemon.kinds.registry import Suggestions, _reopen, suggest
from store import suggestions
from store.connection import open_store
from store.suggestions import PastDecision, SuggestionRow


def queue(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(
            """SELECT id, kind, class_a, class_b, path, state, rank_score, evidence
               FROM suggestions ORDER BY rank_score DESC, id"""
        ).fetchall()
    finally:
        con.close()


def test_a_copy_in_another_folder_is_a_duplicate_and_a_misfile_names_its_home(dev_copy, run_scan):
    root, db = dev_copy
    shutil.copy2(root / "Penny" / "penny1.png", root / "Raj" / "penny1.png")
    (root / "Barack_Obama" / "obama1.jpg").rename(root / "Sheldon" / "obama1.jpg")
    stats = run_scan(root, db)
    assert stats.encoded == 0  # a copy and a move: known content
    rows = queue(db)
    dup = [r for r in rows if r[1] == "duplicate"]
    assert [(r[2], r[3], r[4], r[6]) for r in dup] == [("Raj", "Penny", "Raj/penny1.png", 1.0)]
    assert "identical bytes" in dup[0][7]
    mis = [r for r in rows if r[1] == "misfiled"]
    assert [(r[2], r[3], r[4]) for r in mis] == [("Sheldon", "Barack_Obama", "Sheldon/obama1.jpg")]
    assert "image pair" in mis[0][7]
    # The duplicate ranks first (certain), the planted mistakes lead the queue.
    assert rows[0][1] == "duplicate"
    assert {r[1] for r in rows[:3]} == {"duplicate", "misfiled", "same_person"}

    # Fixing the misfile makes its suggestion moot: it leaves the view.
    (root / "Sheldon" / "obama1.jpg").rename(root / "Barack_Obama" / "obama1.jpg")
    run_scan(root, db)
    assert not [r for r in queue(db) if r[1] == "misfiled"]


def test_a_rejection_survives_rescans_restarts_and_a_folder_rename(dev_copy, run_scan):
    root, db = dev_copy
    (biden,) = [r for r in queue(db) if r[1] == "same_person"]
    sid = biden[0]
    with open_store(db) as con:
        suggestions.decide(con, sid, "rejected", "tester", datetime(2026, 1, 1))
    con = duckdb.connect(str(db), read_only=True)
    try:
        pair_decisions = con.execute(
            """SELECT DISTINCT decision FROM pairs
               WHERE class_a = 'Joe_Biden' AND class_b = 'Joseph_Biden'"""
        ).fetchall()
    finally:
        con.close()
    # The decision covers the image pairs under the suggestion too.
    assert pair_decisions == [("different",)]
    run_scan(root, db)  # a new pipeline: as after a restart
    assert [(r[0], r[5]) for r in queue(db) if r[1] == "same_person"] == [(sid, "rejected")]
    # A folder rename moves every file to a new class: the folder keeps its id, and the
    # suggestion and its decision follow it.
    (root / "Joseph_Biden").rename(root / "Joseph_R_Biden")
    stats = run_scan(root, db)
    assert stats.encoded == 0 and stats.moved == 5
    rows = [r for r in queue(db) if r[1] == "same_person"]
    assert [(r[0], r[2], r[3], r[5]) for r in rows] == [
        (sid, "Joe_Biden", "Joseph_R_Biden", "rejected")
    ]
    # Nothing about it is open in the review queue.
    assert not [r for r in queue(db) if r[5] == "open" and r[1] == "same_person"]


def test_a_rejected_suggestion_comes_back_only_when_its_evidence_grew():
    past = PastDecision("rejected", 0.3, 6, datetime(2026, 1, 2), False)

    def row(score: float, images: int) -> SuggestionRow:
        return SuggestionRow(
            "same:1:2",
            "same_person",
            "m",
            1,
            2,
            None,
            None,
            score,
            0.5,
            images,
            "ev",
            "A",
            "B",
            None,
        )

    snap = SimpleNamespace(decisions={"same:1:2": past})
    for score, images, back in [(0.9, 6, False), (0.35, 12, False), (0.8, 12, True)]:
        out = Suggestions(rows=[row(score, images)])
        _reopen(snap, out)  # type: ignore[arg-type]
        assert ("same:1:2" in out.reopen) == back
        assert out.rows[0].evidence.startswith("back after a rejection") == back


def test_suggest_finds_a_split_and_a_misfile_in_synthetic_people():
    rng = np.random.default_rng(3)
    people = rng.standard_normal((60, 64))
    faces, codes = [], []
    for p in range(60):
        for _ in range(6):
            faces.append(people[p] + 0.6 * rng.standard_normal(64))
            codes.append(p)
    codes = np.array(codes)
    codes[-3:] = 60  # half of person 59 filed under a new name: a split
    codes[5] = 7  # one photo of person 0 filed under person 7
    unit = np.array(faces)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    found, models = suggest(unit, codes, np.empty(0, np.int64), np.empty(0, np.int64))
    assert models is not None
    # The models are used again for exactly these faces.
    empty = np.empty(0, np.int64)
    assert suggest(unit, codes, empty, empty, models=models)[1] is models
    best = sorted(found, key=lambda s: -s.confidence)
    kinds = {(s.kind, s.image, s.folder_b if s.kind == "misfiled" else None) for s in best[:4]}
    assert ("misfiled", 5, 0) in kinds
    same = [s for s in best if s.kind == "same_person"]
    assert same and {same[0].folder_a, same[0].folder_b} == {59, 60}
    assert all(0.0 <= s.confidence <= 1.0 for s in found)


# -- duplicates keep the right file (issue 15, item 1) ---------------------------------------


def test_a_stray_copy_is_the_duplicate_whatever_its_path_and_never_a_stranger(dev_copy, run_scan):
    """A copy of Penny's photo planted in Amy's folder: "Amy" sorts before "Penny", so the
    first copy by path is the stray one. The faces say whose photo it is: the stray copy
    in Amy is the duplicate, the original in Penny stays, and neither copy is anyone's
    stranger or misfile."""
    root, db = dev_copy
    shutil.copy2(root / "Penny" / "penny1.png", root / "Amy" / "penny1.png")
    run_scan(root, db)
    rows = queue(db)
    dup = [r for r in rows if r[1] == "duplicate"]
    assert [(r[2], r[3], r[4]) for r in dup] == [("Amy", "Penny", "Amy/penny1.png")]
    assert "also Penny/penny1.png in Penny, whose person it is" in dup[0][7]
    assert "misfiled" in dup[0][7]
    assert not [
        r for r in rows if r[4] in ("Amy/penny1.png", "Penny/penny1.png") and r is not dup[0]
    ]


def test_without_faces_the_copy_stored_first_is_the_original_never_the_path():
    from daemon.kinds.duplicate import KIND

    def snap(first_seen: list[int]) -> SimpleNamespace:
        # Three files, one content in two folders and no face (no_face images).
        return SimpleNamespace(
            file_ids=np.array([1, 2, 3]),
            file_paths=["A/x.jpg", "B/x.jpg", "B/y.jpg"],
            file_classes=["A", "B", "B"],
            file_hashes=["h", "h", "k"],
            file_first_seen=np.array(first_seen),
            faces=SimpleNamespace(ids=np.empty(0, np.int64), classes=[], hashes=[]),
        )

    folders = {"A": 10, "B": 20}
    # B's copy was stored first: A's (first by path) is the copy.
    (said,) = KIND.survey(snap([200, 100, 100]), folders).found  # type: ignore[arg-type]
    assert (said.row.class_a_name, said.row.class_b_name) == ("A", "B")
    assert said.row.path_name == "A/x.jpg"
    assert "the copy stored first (B's) is kept" in said.row.evidence
    survey = KIND.survey(snap([100, 200, 100]), folders)  # type: ignore[arg-type]
    assert [s.row.path_name for s in survey.found] == ["B/x.jpg"]
    assert survey.left_out == {2}
