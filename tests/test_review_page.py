"""The review page (issue 7, item 4): suggested mistakes as cards on the landing page,
decided by keyboard toolbar, as file actions with undo or as recorded decisions. Real
scanned stores, real files moved in temp copies, Streamlit's own AppTest."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
from streamlit.testing.v1 import AppTest

from store import actions as action_log
from store import suggestions
from store.connection import open_store
from store.schema import SCHEMA_VERSION
from store.suggestions import CONFIDENCE_FLOOR
from tests import app_harness as harness
from tests.app_harness import captions as image_captions
from tests.app_harness import shown

BIDEN = ("Joe_Biden", "Joseph_Biden")
CARD_VALUES = ("accept", "quarantine", "reject", "skip")  # a card's buttons: <value>-<card>


def start(monkeypatch, root: Path, db: Path, *extra: str) -> AppTest:
    """The landing page (the review queue), with the queue's own page size."""
    return harness.start(monkeypatch, root, db, *extra, page=None, page_size=None)


def suggestion(db: Path, kind: str) -> suggestions.Suggestion:
    with open_store(db, read_only=True, timeout=5) as con:
        (found,) = [s for s in suggestions.queue(con, "all", [kind], 100) if s.kind == kind]
        return found


def state_of(db: Path, sid: str) -> tuple[str, str | None]:
    with open_store(db, read_only=True, timeout=5) as con:
        s = suggestions.get(con, sid)
        assert s is not None
        return s.state, s.target


def files_in(root: Path, klass: str) -> list[str]:
    folder = root / klass
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def focus(at: AppTest) -> str:
    return str(at.session_state["q_mistakes_focus"])


def toolbar(at: AppTest, value: str) -> AppTest:
    at.button(key=f"q-mistakes-{value}").click().run()
    assert not at.exception, at.exception
    return at


def _with_a_stranger(dev_copy, run_scan) -> tuple[Path, Path]:
    """The dev faces with one stranger planted: Anthony Hopkins's photo in Michael Caine's
    folder, and no folder of his own left."""
    root, db = dev_copy
    (root / "Anthony_Hopkins" / "Anthony_Hopkins_0001.jpg").rename(
        root / "Michael_Caine" / "Anthony_Hopkins_0001.jpg"
    )
    shutil.rmtree(root / "Anthony_Hopkins")
    run_scan(root, db)
    return root, db


def test_the_queue_is_the_landing_page_and_records_decisions_without_file_actions(
    dev_copy, monkeypatch
):
    root, db = dev_copy
    before = {k: files_in(root, k) for k in BIDEN}
    at = start(monkeypatch, root, db)
    text = shown(at)
    assert "Review" in [h.value for h in at.header]
    assert "File actions are off" in text
    with open_store(db, read_only=True, timeout=5) as con:
        n = suggestions.count(con)
    assert f"{n} open suggestions · showing 1–{n}, most likely mistake first" in text
    # Best first: the Biden split, both folders with their sizes, evidence, confidence.
    biden = suggestion(db, "same_person")
    assert focus(at) == biden.id.replace(":", "-")
    assert "**Joe_Biden** · 2 images" in text and "**Joseph_Biden** · 5 images" in text
    assert "9 of 10 image pairs ≥ 0.4" in text
    assert f"confidence **{biden.rank_score:.2f}**" in text
    # Both folders' faces side by side: 2 + 5 crops.
    captions = image_captions(at)
    assert sum(c.startswith("biden") for c in captions) == 2
    assert sum(c.startswith("Joseph_Biden_") for c in captions) == 5
    # Without file actions the buttons confirm, never "fix": A records "confirmed, not
    # fixed" and moves nothing.
    assert [b.label for b in at.button if b.key == f"accept-{focus(at)}"] == [
        "confirm: same person"
    ]
    assert at.button(key="q-mistakes-accept").label == "confirm"
    toolbar(at, "accept")
    assert state_of(db, biden.id) == ("confirmed", "Joseph_Biden")  # the larger folder
    assert {k: files_in(root, k) for k in BIDEN} == before
    assert (f"{n - 1} open suggestion" if n > 1 else "No open suggestions") in shown(at)
    toolbar(at, "undo")
    assert state_of(db, biden.id) == ("open", None)
    # Q means nothing for two folders: refused, nothing stored.
    toolbar(at, "quarantine")
    assert any("no one image to quarantine" in str(t.value) for t in at.toast)
    assert state_of(db, biden.id) == ("open", None)


def test_merge_into_the_chosen_name_is_one_undoable_group(dev_copy, monkeypatch):
    root, db = dev_copy
    before = {k: files_in(root, k) for k in BIDEN}
    at = start(monkeypatch, root, db, "--allow-file-actions")
    biden = suggestion(db, "same_person")
    card = focus(at)
    assert [b.label for b in at.button if b.key == f"accept-{card}"] == ["merge folders"]
    keep = at.radio(key=f"keep-{card}")
    assert keep.value == "Joseph_Biden"  # the larger folder by default
    keep.set_value("Joe_Biden").run()
    toolbar(at, "accept")
    assert state_of(db, biden.id) == ("accepted", "Joe_Biden")
    assert not (root / "Joseph_Biden").exists()  # emptied, then removed
    assert files_in(root, "Joe_Biden") == sorted(before["Joe_Biden"] + before["Joseph_Biden"])
    with open_store(db, read_only=True, timeout=5) as con:
        logged = con.execute("SELECT action, batch, suggestion FROM actions ORDER BY id").fetchall()
    assert len(logged) == 5 and {r[0] for r in logged} == {"move"}
    assert len({r[1] for r in logged}) == 1 and logged[0][1] is not None
    assert {r[2] for r in logged} == {biden.id}
    # One undo takes the whole merge back and reopens the suggestion.
    toolbar(at, "undo")
    assert {k: files_in(root, k) for k in BIDEN} == before
    assert state_of(db, biden.id) == ("open", None)
    assert card in [b.key.removeprefix("accept-") for b in at.button if b.key]


def _planted(dev_copy, run_scan) -> tuple[Path, Path]:
    """A copy of Penny's photo in Raj's folder, and Obama's photo filed under Sheldon."""
    root, db = dev_copy
    shutil.copy2(root / "Penny" / "penny1.png", root / "Raj" / "penny1.png")
    (root / "Barack_Obama" / "obama1.jpg").rename(root / "Sheldon" / "obama1.jpg")
    run_scan(root, db)
    return root, db


def _only_kind(at: AppTest, kind: str) -> AppTest:
    at.multiselect(key="m_kinds").set_value([kind]).run()
    assert not at.exception, at.exception
    return at


def test_misfiled_card_moves_the_image_to_the_proposed_folder(dev_copy, run_scan, monkeypatch):
    root, db = _planted(dev_copy, run_scan)
    at = _only_kind(start(monkeypatch, root, db, "--allow-file-actions"), "misfiled")
    mis = suggestion(db, "misfiled")
    text = shown(at)
    assert "its folder now" in text and "the proposed folder" in text
    assert "**Sheldon**" in text and "**Barack_Obama**" in text
    labels = [b.label for b in at.button if b.key and b.key.endswith(focus(at))]
    assert labels == ["move image", "quarantine", "filed right", "skip"]
    # The image large (face, photo) and both folders' strips beside it.
    captions = image_captions(at)
    assert captions[:2] == ["face", "photo"]
    assert any(c.startswith("obama") for c in captions[2:])
    toolbar(at, "accept")
    assert state_of(db, mis.id) == ("accepted", "Barack_Obama")
    assert (root / "Barack_Obama" / "obama1.jpg").is_file()
    assert not (root / "Sheldon" / "obama1.jpg").exists()


def test_stranger_card_and_a_decided_one_cleared_from_the_rejected_list(
    dev_copy, run_scan, monkeypatch
):
    root, db = _with_a_stranger(dev_copy, run_scan)
    at = _only_kind(start(monkeypatch, root, db), "stranger")
    with open_store(db, read_only=True, timeout=5) as con:
        strangers = [s for s in suggestions.queue(con, "open", ["stranger"], 100)]
    (stranger,) = [s for s in strangers if s.id.replace(":", "-") == focus(at)]
    text = shown(at)
    assert "**stranger in its folder**" in text and "matches no one in" in text
    labels = [b.label for b in at.button if b.key and b.key.endswith(focus(at))]
    assert labels == ["confirm: quarantine", "filed right", "skip"]  # file actions off
    toolbar(at, "reject")
    assert state_of(db, stranger.id)[0] == "rejected"
    left = len(strangers) - 1
    assert (f"{left} open suggestion" if left else "No open suggestions") in shown(at)
    # Decided ones are a filter away, each with a "clear decision" that reopens it.
    at.selectbox(key="m_state").set_value("rejected").run()
    assert "1 rejected suggestions" in shown(at)
    at.button(key=f"clear-{stranger.id.replace(':', '-')}").click().run()
    assert not at.exception
    assert state_of(db, stranger.id)[0] == "open"
    assert "No rejected suggestions" in shown(at)


def test_pages_of_the_queue(dev_copy, run_scan, monkeypatch):
    root, db = _planted(dev_copy, run_scan)
    at = start(monkeypatch, root, db, "--page-size", "2")
    with open_store(db, read_only=True, timeout=5) as con:
        total = suggestions.count(con)
    assert total >= 3
    assert f"{total} open suggestions · showing 1–2" in shown(at)
    # The confidence filter starts at the store's floor, shown; raised, it leaves the
    # unlikelier suggestions out and says so.
    assert at.slider(key="m_confidence").value == CONFIDENCE_FLOOR
    with open_store(db, read_only=True, timeout=5) as con:
        likely = suggestions.count(con, "open", (), 0.5)
    assert 0 < likely < total
    at.slider(key="m_confidence").set_value(0.5).run()
    assert f"{likely} open suggestions with confidence ≥ 0.50" in shown(at)
    at.slider(key="m_confidence").set_value(CONFIDENCE_FLOOR).run()
    at.button(key="mistakes-next").click().run()
    assert not at.exception
    assert f"showing 3–{min(4, total)}" in shown(at)
    assert "page 2 of" in shown(at)


def test_a_merge_never_overwrites_and_a_refused_file_moves_nothing(dev_copy):
    from dashboard import actions
    from dashboard.cards import same_person
    from dashboard.files import FileActionRefused
    from dashboard.settings import parse_args

    root, db = dev_copy
    settings = parse_args(
        ["--db", str(db), "--root", str(root), "--allow-file-actions", "--user", "tester"]
    )
    biden = suggestion(db, "same_person")
    (root / "Joe_Biden" / "notes.txt").write_text("Joe")
    (root / "Joseph_Biden" / "notes.txt").write_text("Joseph")
    # A link among the files: the scanner never follows one, so a merge refuses it, and
    # the files it had moved already go back.
    (root / "Joe_Biden" / "zz-link.jpg").symlink_to(root / "Penny" / "penny1.png")
    before = {k: files_in(root, k) for k in BIDEN}
    try:
        same_person.merge(settings, biden, "Joseph_Biden")
    except FileActionRefused as exc:
        assert "symbolic link" in str(exc)
    else:
        raise AssertionError("a merge through a symbolic link was not refused")
    assert {k: files_in(root, k) for k in BIDEN} == before
    assert state_of(db, biden.id) == ("open", None)
    (root / "Joe_Biden" / "zz-link.jpg").unlink()
    done = same_person.merge(settings, biden, "Joseph_Biden")
    assert "3 files moved" in done.message
    assert (root / "Joseph_Biden" / "notes.txt").read_text() == "Joseph"
    assert (root / "Joseph_Biden" / "notes-2.txt").read_text() == "Joe"
    assert done.action_id is not None
    actions.undo(settings, done.action_id)
    assert (root / "Joe_Biden" / "notes.txt").read_text() == "Joe"
    assert state_of(db, biden.id) == ("open", None)


def test_a_schema_2_store_gains_action_batches_on_open(dev_copy):
    _, db = dev_copy
    # Back to schema 2 as a store written before this version was.
    con = duckdb.connect(str(db))
    try:
        con.execute("ALTER TABLE actions DROP COLUMN batch")
        con.execute("ALTER TABLE actions DROP COLUMN suggestion")
        con.execute("DROP SEQUENCE action_batches")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
        con.execute(
            """INSERT INTO actions (id, acted_at, who, action, src, dst)
               VALUES (nextval('action_ids'), now(), 'old', 'move', 'a/x.jpg', 'b/x.jpg')"""
        )
    finally:
        con.close()
    with open_store(db) as con:
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        old = con.execute("SELECT who, batch, suggestion FROM actions").fetchall()
        assert action_log.new_batch(con) >= 1
    assert version == (str(SCHEMA_VERSION),)
    assert old == [("old", None, None)]  # an old action stands alone


def test_a_mistake_confirmed_without_file_actions_waits_to_be_fixed(dev_copy, monkeypatch):
    """File actions off: A confirms (state `confirmed`, listed as "to fix"), nothing moves.
    Later, with file actions on, the page says it waits, and A under "to fix" fixes it."""
    root, db = dev_copy
    at = start(monkeypatch, root, db)
    biden = suggestion(db, "same_person")
    toolbar(at, "accept")
    assert state_of(db, biden.id)[0] == "confirmed"
    assert (root / "Joe_Biden").is_dir()
    at = start(monkeypatch, root, db, "--allow-file-actions")
    assert "1 confirmed mistake waits to be fixed" in shown(at)
    at.selectbox(key="m_state").set_value("confirmed").run()
    assert "1 to fix (confirmed, not fixed) suggestions" in shown(at)
    assert focus(at) == biden.id.replace(":", "-")
    assert at.button(key="q-mistakes-accept").label == "fix it"
    toolbar(at, "accept")
    assert state_of(db, biden.id) == ("accepted", "Joseph_Biden")
    assert not (root / "Joe_Biden").exists()


def test_the_duplicate_card_keeps_the_original_whatever_the_paths(dev_copy, run_scan, monkeypatch):
    """Penny's photo copied into Amy's folder ("Amy" sorts first): the card's copy is the
    stray one in Amy, each side has "keep this one", and A quarantines the stray copy."""
    root, db = dev_copy
    shutil.copy2(root / "Penny" / "penny1.png", root / "Amy" / "penny1.png")
    run_scan(root, db)
    at = _only_kind(start(monkeypatch, root, db, "--allow-file-actions"), "duplicate")
    dup = suggestion(db, "duplicate")
    text = shown(at)
    assert "the copy in Amy (the stray one)" in text and "the original in Penny" in text
    assert "**Amy/penny1.png**" in text and "**Penny/penny1.png**" in text
    card = focus(at)
    keep = [b.label for b in at.button if b.key in (f"keep-copy-{card}", f"keep-original-{card}")]
    assert keep == ["keep this one", "keep this one"]
    labels = [b.label for b in at.button if b.key in (f"{v}-{card}" for v in CARD_VALUES)]
    assert labels == ["quarantine", "keep both", "skip"]
    toolbar(at, "accept")
    assert state_of(db, dup.id)[0] == "accepted"
    assert (root / "_quarantine" / "Amy" / "penny1.png").is_file()
    assert not (root / "Amy" / "penny1.png").exists()
    assert (root / "Penny" / "penny1.png").is_file()
    # "keep this one" on the stray side takes the original out instead.
    toolbar(at, "undo")
    assert (root / "Amy" / "penny1.png").is_file()
    at.button(key=f"keep-copy-{card}").click().run()
    assert not at.exception, at.exception
    assert (root / "_quarantine" / "Penny" / "penny1.png").is_file()
    assert (root / "Amy" / "penny1.png").is_file()
    assert state_of(db, dup.id)[0] == "accepted"


def test_a_card_whose_suggestion_went_away_collapses_and_the_keys_move_on(
    dev_copy, run_scan, monkeypatch
):
    """The daemon dropped the focused card's suggestion after the page loaded (a fix made
    elsewhere made it moot): D collapses it as "no longer suggested", the focus moves on,
    and nothing is recorded."""
    root, db = _planted(dev_copy, run_scan)
    at = start(monkeypatch, root, db)
    first = focus(at)
    with open_store(db, read_only=True, timeout=5) as con:
        ids = [s.id for s in suggestions.queue(con, "open", (), 100)]
    assert len(ids) >= 2 and ids[0].replace(":", "-") == first
    with open_store(db) as con:
        con.execute("UPDATE suggestion_rows SET active = false WHERE id = ?", [ids[0]])
    toolbar(at, "reject")
    assert "no longer suggested" in shown(at)
    assert focus(at) == ids[1].replace(":", "-")
    with open_store(db, read_only=True, timeout=5) as con:
        assert suggestions.get(con, ids[0]) is None  # inactive, undecided: not listed


def test_a_merge_of_one_name_in_two_forms_offers_the_nfc_name_alone():
    import unicodedata

    from dashboard.cards.base import Card
    from dashboard.cards.same_person import one_name, surviving

    nfc = "長谷川ガク"
    nfd = unicodedata.normalize("NFD", nfc)

    def card(a: str, b: str, sizes: dict[str, int]) -> Card:
        s = suggestions.Suggestion(
            "same:1:2", "same_person", 1.0, a, b, None, "", "open", None, 7, None, None
        )
        return Card(s, sizes)

    # The NFD folder is the larger, yet the NFC name survives: one choice, not two.
    assert one_name(card(nfd, nfc, {nfd: 4, nfc: 3})) == nfc
    assert surviving(card(nfd, nfc, {nfd: 4, nfc: 3})) == nfc
    assert one_name(card("Joe_Biden", "Joseph_Biden", {})) is None
