"""The dashboard's reads (store/queries) and the decisions and actions tables, against a
real store scanned from tests/faces."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from store import actions as action_log
from store import decisions, meta
from store.connection import open_store
from store.queries import pairs_page
from store.queries import person as person_page
from store.queries import problems as problems_page
from store.queries import status as status_page
from store.queries.pairs_page import PairFilter
from tests.conftest import LOOSE_THRESHOLD

# What each review state means, said in terms of the `pairs` view.
VIEW_WHERE = {
    "unreviewed": "decision IS NULL",
    "skipped": "decision = 'skipped'",
    "different": "decision = 'different'",
    "same": "decision = 'same'",
    "removed": "decision = 'removed'",
    "decided": "decision IS NOT NULL AND decision <> 'skipped'",
    "all": "true",
}


def _ro(db: Path):
    return open_store(db, read_only=True, timeout=5)


def _view_count(db: Path, where: str) -> int:
    # The `pairs` view is the documented interface: the dashboard's faster query must
    # agree with it on what each review state contains.
    with _ro(db) as con:
        row = con.execute(f"SELECT count(*) FROM pairs WHERE {where}").fetchone()
    assert row is not None
    return int(row[0])


def test_first_page_is_the_planted_mistake_best_first(scanned_dev_loose):
    _, db = scanned_dev_loose
    with _ro(db) as con:
        page = pairs_page.pair_page(con, PairFilter(), 10)
        total = pairs_page.count_pairs(con, PairFilter())
    assert total == _view_count(db, "decision IS NULL") > 10
    assert len(page) == 10
    top = page[0]
    assert (top.a.klass, top.b.klass) == ("Joe_Biden", "Joseph_Biden")
    assert top.a.path < top.b.path  # left/right as in the `pairs` view
    assert top.a.box is not None and top.b.box is not None
    left, top_, right, bottom = top.a.box
    assert 0 <= left < right <= top.a.width and 0 <= top_ < bottom <= top.a.height
    scores = [p.score for p in page]
    assert scores == sorted(scores, reverse=True)
    assert all(p.decision is None for p in page)


def test_keyset_pages_walk_every_pair_once_in_order(scanned_dev_loose):
    _, db = scanned_dev_loose
    with _ro(db) as con:
        everything = pairs_page.pair_page(con, PairFilter(state="all"), 1000)
        walked, after = [], None
        while page := pairs_page.pair_page(con, PairFilter(state="all"), 4, after):
            walked += page
            after = page[-1].cursor
    assert [(p.lo, p.hi) for p in walked] == [(p.lo, p.hi) for p in everything]
    assert set(VIEW_WHERE) == set(pairs_page.REVIEW_STATES)
    assert len(everything) == _view_count(db, "true")


def test_score_and_class_filters(scanned_dev_loose):
    _, db = scanned_dev_loose
    with _ro(db) as con:
        high = pairs_page.pair_page(con, PairFilter(min_score=0.6), 1000)
        band = pairs_page.pair_page(con, PairFilter(min_score=0.45, max_score=0.6), 1000)
        biden = pairs_page.pair_page(con, PairFilter(class_search="BIDEN"), 1000)
        raj = pairs_page.pair_page(con, PairFilter(klass="Raj", state="all"), 1000)
        # LIKE would read these as wildcards; the search is literal.
        assert pairs_page.count_pairs(con, PairFilter(class_search="%")) == 0
        assert pairs_page.count_pairs(con, PairFilter(class_search="e_b")) > 0
        assert pairs_page.count_pairs(con, PairFilter(class_search="e_b_")) == 0
    assert high and all(p.score >= 0.6 for p in high)
    assert band and all(0.45 <= p.score <= 0.6 for p in band)
    assert biden and all("biden" in (p.a.klass + p.b.klass).lower() for p in biden)
    assert raj and all("Raj" in (p.a.klass, p.b.klass) for p in raj)
    with _ro(db) as con, pytest.raises(ValueError, match="review state"):
        pairs_page.pair_page(con, PairFilter(state="nonsense"), 1)


def test_decisions_hide_pairs_and_agree_with_the_pairs_view(dev_copy_loose):
    _, db = dev_copy_loose
    with _ro(db) as con:
        first, second, third = pairs_page.pair_page(con, PairFilter(), 3)
    with open_store(db) as con:
        decisions.record_decision(con, first.b.hash, first.a.hash, "different", "tester")
        decisions.record_decision(con, second.a.hash, second.b.hash, "skipped", "tester")
        decisions.record_decision(con, third.a.hash, third.b.hash, "same", "tester")
    with _ro(db) as con:
        unreviewed = pairs_page.pair_page(con, PairFilter(), 1000)
        keys = {(p.lo, p.hi) for p in unreviewed}
        assert not keys & {(first.lo, first.hi), (second.lo, second.hi), (third.lo, third.hi)}
        skipped = pairs_page.pair_page(con, PairFilter(state="skipped"), 9)
        assert [p.lo for p in skipped] == [second.lo]
        decided = pairs_page.pair_page(con, PairFilter(state="decided"), 9)
        assert {p.decision for p in decided} == {"different", "same"}
        assert decisions.decision_for(con, first.a.hash, first.b.hash) == "different"
        assert status_page.totals(con)["decisions"] == {"different": 1, "skipped": 1, "same": 1}
        for state, where in VIEW_WHERE.items():
            assert pairs_page.count_pairs(con, PairFilter(state=state)) == _view_count(db, where)
    # A later decision replaces an earlier one; clearing with only_if spares a newer one.
    with open_store(db) as con:
        decisions.record_decision(con, first.a.hash, first.b.hash, "same", "tester")
        assert not decisions.clear_decision(con, first.a.hash, first.b.hash, only_if="different")
        assert decisions.clear_decision(con, second.a.hash, second.b.hash)
    with _ro(db) as con:
        assert decisions.decision_for(con, first.a.hash, first.b.hash) == "same"
        assert decisions.decision_for(con, second.a.hash, second.b.hash) is None
    with open_store(db) as con, pytest.raises(ValueError, match="unknown decision"):
        decisions.record_decision(con, first.a.hash, first.b.hash, "maybe", "tester")


def test_a_decision_follows_the_content_through_a_rename_and_rescan(dev_copy_loose, run_scan):
    root, db = dev_copy_loose
    with _ro(db) as con:
        top = pairs_page.pair_page(con, PairFilter(), 1)[0]
    with open_store(db) as con:
        decisions.record_decision(con, top.a.hash, top.b.hash, "different", "tester")
    renamed = root / "Joseph_Biden" / "renamed, copy 2.jpg"
    (root / top.b.path).rename(renamed)
    run_scan(root, db, threshold=LOOSE_THRESHOLD)
    with _ro(db) as con:
        assert (top.lo, top.hi) not in {
            (p.lo, p.hi) for p in pairs_page.pair_page(con, PairFilter(), 1000)
        }
        different = pairs_page.pair_page(con, PairFilter(state="different"), 9)
    assert [p.b.path for p in different] == ["Joseph_Biden/renamed, copy 2.jpg"]


def test_class_images_names_problems_and_hubs(dev_copy):
    _, db = dev_copy
    with _ro(db) as con:
        images, total = person_page.class_images(con, "Joseph_Biden", 3)
        rest, _ = person_page.class_images(con, "Joseph_Biden", 3, offset=3)
        names = dict(person_page.class_names(con))
        found = person_page.class_names(con, "bid")
        problems, n_problems = problems_page.problems(con)
        no_face, _ = problems_page.problems(con, ["no_face"])
        assert problems_page.hub_images(con) == ([], 0)
    assert total == 5 and len(images) == 3 and len(rest) == 2
    assert [i.path for i in images + rest] == sorted(i.path for i in images + rest)
    assert names["Joe_Biden"] == 2 and len(names) == 15
    assert [n for n, _ in found] == ["Joe_Biden", "Joseph_Biden"]
    assert [i.path for i in no_face] == ["Charlton_Heston/pilatus800.jpg"]
    assert no_face[0].message
    assert n_problems == len(problems) >= 3  # the no-face image and the group photos
    assert {"no_face", "multi_face"} <= {i.status for i in problems}
    # With one pair kept per image, images with more candidates are hubs.
    with open_store(db) as con:
        meta.set_meta(con, max_pairs_per_image=1)
    with _ro(db) as con:
        hubs, n_hubs = problems_page.hub_images(con)
        page_two, _ = problems_page.hub_images(con, 1, offset=1)
    assert hubs and n_hubs == len(hubs) and all(h.candidates > 1 for h in hubs)
    # Hubs page on their own.
    assert page_two == hubs[1:2]
    assert [h.candidates for h in hubs] == sorted((h.candidates for h in hubs), reverse=True)


def test_action_log_records_and_undoes(dev_copy_loose):
    _, db = dev_copy_loose
    with open_store(db) as con:
        first = action_log.log_action(
            con,
            "move",
            "Joe_Biden/biden2.jpg",
            "Joseph_Biden/biden2.jpg",
            "tester",
            ("b" * 32, "a" * 32),
        )
        second = action_log.log_action(
            con, "quarantine", "Raj/raj1.png", "_quarantine/Raj/raj1.png", "tester"
        )
    with _ro(db) as con:
        row = action_log.get_action(con, first)
        assert row is not None and row.undoable and row.who == "tester"
        assert (row.hash_a, row.hash_b) == ("a" * 32, "b" * 32)  # least first
        moved = action_log.last_moves_from(con, ["Joe_Biden/biden2.jpg", "Amy/amy1.png"])
        assert list(moved) == ["Joe_Biden/biden2.jpg"]
        assert [r.id for r in action_log.recent_actions(con)] == [second, first]
    with open_store(db) as con:
        action_log.mark_undone(con, first)
        undo = action_log.log_action(
            con, "undo", "Joseph_Biden/biden2.jpg", "Joe_Biden/biden2.jpg", "tester", undo_of=first
        )
    with _ro(db) as con:
        row = action_log.get_action(con, first)
        assert row is not None and row.undone_at is not None and not row.undoable
        assert action_log.last_moves_from(con, ["Joe_Biden/biden2.jpg"]) == {}
        undo_row = action_log.get_action(con, undo)
        assert undo_row is not None and undo_row.undo_of == first and not undo_row.undoable


def test_japanese_class_names_are_found_and_kept_intact(dev_copy_loose, run_scan):
    root, db = dev_copy_loose
    (root / "Joseph_Biden").rename(root / "ジョー・バイデン")
    stats = run_scan(root, db, threshold=LOOSE_THRESHOLD)
    assert stats.encoded == 0  # a renamed folder is moves, not new images
    with _ro(db) as con:
        top = pairs_page.pair_page(con, PairFilter(class_search="バイデン"), 1)[0]
        assert person_page.class_names(con, "バイデン") == [("ジョー・バイデン", 5)]
    assert top.b.klass == "ジョー・バイデン"
    assert top.b.path.startswith("ジョー・バイデン/")


def test_review_queries_only_read(scanned_dev_loose):
    # Every page query must work on a read-only connection: nothing in them writes.
    _, db = scanned_dev_loose
    con = duckdb.connect(str(db), read_only=True)
    try:
        pairs_page.pair_page(con, PairFilter(class_search="a", state="decided"), 5)
        pairs_page.count_pairs(con, PairFilter(klass="Amy"))
        person_page.class_images(con, "Amy", 5)
        problems_page.problems(con)
        problems_page.hub_images(con)
        action_log.recent_actions(con)
        status_page.totals(con)
    finally:
        con.close()


def test_names_are_searched_as_people_type_them_and_one_name_in_two_forms_is_one_person(
    dev_copy, run_scan
):
    """Joseph Biden's five photos split between an NFC-named folder (what an IME types)
    and an NFD-named one (what macOS writes) of one name; two more folders renamed to
    a katakana and a spaced name. The Person search for the NFC name finds both folders
    (each kept exactly as on disk), width forms and full-width spaces find their folders,
    and the two forms are the first same_person suggestion, saying why."""
    import shutil
    import unicodedata

    root, db = dev_copy
    nfc_name = "長谷川ガク"
    nfd_name = unicodedata.normalize("NFD", nfc_name)
    assert nfd_name != nfc_name
    (root / "Joseph_Biden").rename(root / nfc_name)
    (root / nfd_name).mkdir()
    for photo in sorted((root / nfc_name).iterdir())[:2]:
        shutil.move(photo, root / nfd_name / photo.name)
    (root / "Penny").rename(root / "スズキ")
    (root / "Amy").rename(root / "田中 花子")
    stats = run_scan(root, db)
    assert stats.encoded == 0
    with _ro(db) as con:
        found = dict(person_page.class_names(con, nfc_name))
        assert found == {nfc_name: 3, nfd_name: 2}
        assert set(person_page.class_names(con, nfd_name)) == set(found.items())
        assert [n for n, _ in person_page.class_names(con, "ｽｽﾞｷ")] == ["スズキ"]
        assert [n for n, _ in person_page.class_names(con, "田中　花子")] == ["田中 花子"]
        assert person_page.folders_named(con, nfc_name) == [nfc_name]
        assert person_page.folders_named(con, "nobody") == []
        rows = con.execute(
            """SELECT class_a, class_b, rank_score, evidence FROM suggestions
               WHERE kind = 'same_person' AND state = 'open'
               ORDER BY rank_score DESC, id"""
        ).fetchall()
    first = rows[0]
    assert {first[0], first[1]} == {nfc_name, nfd_name}
    assert first[2] == 1.0
    assert "the same name in two Unicode forms" in first[3]
