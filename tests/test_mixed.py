"""Issue 14: a folder that holds two people. Real dev faces with the article's two
mistakes planted — a namesake's photos in a lesser-known person's folder, two people
swapped across their folders — scanned by the real pipeline into real stores, and the
card's decisions carried out by the dashboard's own actions, in-process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboard import actions
from dashboard.cards import mixed as mixed_card
from dashboard.files import FileActionRefused
from dashboard.settings import parse_args
from store import suggestions
from store.connection import open_store
from store.queries import images as image_rows
from store.queries import review_cards
from store.suggestions import id_folders, with_folders
from store.vocab import Decision, Kind, State
from tests.conftest import copy_dev_faces, real_files, scan

# The namesake: three of Sheldon's photos filed in Anthony Hopkins's folder, which holds
# two of his own. Sheldon's folder keeps bbt1.jpg (a group photo) and two more.
NAMESAKE = {f"Sheldon/sheldon{i}.png": f"Anthony_Hopkins/sheldon{i}.png" for i in (1, 2, 3)}
# The swap: two of Penny's photos in Bernadette's folder and two of hers in Penny's.
SWAP = {
    "Penny/penny1.png": "Bernadette/penny1.png",
    "Penny/penny2.png": "Bernadette/penny2.png",
    "Bernadette/bernadette1.png": "Penny/bernadette1.png",
    "Bernadette/bernadette2.png": "Penny/bernadette2.png",
}


def planted(base: Path, moves: dict[str, str], seed_encodings) -> tuple[Path, Path]:
    root = copy_dev_faces(base / "data")
    for old, new in moves.items():
        (root / old).rename(root / new)
    db = seed_encodings(base / "facelint.duckdb")
    stats = scan(root, db)
    assert stats.encoded == 0, "the dev faces' encodings are seeded: nothing to encode"
    return root, db


def open_cards(db: Path) -> list[suggestions.Suggestion]:
    with open_store(db, read_only=True, timeout=10) as con:
        return suggestions.queue(con, State.OPEN, limit=1000)


def group_of(db: Path, sid: str) -> list[str]:
    with open_store(db, read_only=True, timeout=10) as con:
        return review_cards.suggestion_group(con, sid)


@pytest.fixture(scope="module")
def namesake(tmp_path_factory, seed_encodings) -> tuple[Path, Path]:
    """The namesake planted and scanned once; read-only use (copy it to decide)."""
    return planted(tmp_path_factory.mktemp("namesake"), NAMESAKE, seed_encodings)


@pytest.fixture
def namesake_copy(namesake, tmp_path) -> tuple[Path, Path]:
    root, db = namesake
    shutil.copytree(root, tmp_path / "data", copy_function=shutil.copy2)
    shutil.copy2(db, tmp_path / "facelint.duckdb")
    return tmp_path / "data", tmp_path / "facelint.duckdb"


def the_card(db: Path) -> suggestions.Suggestion:
    mixed = [s for s in open_cards(db) if s.kind == Kind.MIXED]
    assert len(mixed) == 1, mixed
    return mixed[0]


def test_a_namesake_gives_one_mixed_card_naming_its_home_and_no_merge(namesake):
    _, db = namesake
    cards = open_cards(db)
    card = the_card(db)
    assert (card.class_a, card.class_b) == ("Anthony_Hopkins", "Sheldon")
    assert group_of(db, card.id) == sorted(NAMESAKE.values())
    assert "Anthony_Hopkins holds 3 photos that match Sheldon" in card.evidence
    assert "beside 2 of its own" in card.evidence
    # No merge of the two folders, and no card of its own for any photo of either person
    # in Anthony Hopkins's folder: the group is one card, his own photos are his.
    assert not [
        s
        for s in cards
        if s.kind == Kind.SAME_PERSON and {s.class_a, s.class_b} == {"Anthony_Hopkins", "Sheldon"}
    ]
    assert not [s for s in cards if s.path and s.path.startswith("Anthony_Hopkins/")]
    # What the dev faces hold of their own is still found: Joe and Joseph Biden.
    assert any(
        s.kind == Kind.SAME_PERSON and {s.class_a, s.class_b} == {"Joe_Biden", "Joseph_Biden"}
        for s in cards
    )


def test_the_id_names_both_folders_and_survives_a_rescan_and_a_rename(namesake_copy):
    root, db = namesake_copy
    card = the_card(db)
    folders = id_folders(card.id)
    assert len(folders) == 2 and card.id == f"mixed:{folders[0]}:{folders[1]}"
    assert with_folders(card.id, {folders[0]: 70, folders[1]: 71}) == "mixed:70:71"
    assert id_folders("mixed:3:new-0123456789abcdef") == [3]
    (root / "Sheldon").rename(root / "Sheldon_Cooper")
    scan(root, db)
    again = the_card(db)
    assert again.id == card.id and again.class_b == "Sheldon_Cooper"


def test_a_swap_gives_two_cards_one_per_folder(tmp_path, seed_encodings):
    _, db = planted(tmp_path, SWAP, seed_encodings)
    cards = open_cards(db)
    mixed = sorted((s.class_a, s.class_b) for s in cards if s.kind == Kind.MIXED)
    assert mixed == [("Bernadette", "Penny"), ("Penny", "Bernadette")]
    for s in cards:
        if s.kind == Kind.MIXED:
            moved = sorted(new for new in SWAP.values() if new.startswith(f"{s.class_a}/"))
            assert group_of(db, s.id) == moved
    assert not [
        s
        for s in cards
        if s.kind == Kind.SAME_PERSON and {s.class_a, s.class_b} == {"Penny", "Bernadette"}
    ]


def _settings(root: Path, db: Path):
    return parse_args(
        ["--db", str(db), "--root", str(root), "--allow-file-actions", "--user", "tester"]
    )


def _group_images(db: Path, s: suggestions.Suggestion) -> list[image_rows.ImageInfo]:
    paths = group_of(db, s.id)
    with open_store(db, read_only=True, timeout=10) as con:
        found = image_rows.images_by_path(con, paths)
    return [found[p] for p in paths]


def test_moving_the_group_home_is_one_batch_that_one_undo_takes_back(namesake_copy):
    root, db = namesake_copy
    settings = _settings(root, db)
    before = real_files(root)
    card = the_card(db)
    group = _group_images(db, card)
    done = mixed_card.move_group(settings, card, group, "Sheldon")
    assert done.action_id is not None and "moved 3 photos" in done.message
    assert real_files(root) == (before - set(NAMESAKE.values())) | {
        f"Sheldon/{Path(p).name}" for p in NAMESAKE.values()
    }
    with open_store(db, read_only=True, timeout=10) as con:
        assert suggestions.get(con, card.id).state == State.ACCEPTED
        # Accepted: each photo and its best match in Sheldon's folder are one person.
        h = group[0].hash
        said = con.execute(
            "SELECT count(*) FROM decisions WHERE decision = ? AND (hash_a = ? OR hash_b = ?)",
            [str(Decision.SAME), h, h],
        ).fetchone()
        assert said is not None and said[0] >= 1
    # The fix makes the card moot: a rescan finds the folders one person each.
    scan(root, db)
    assert not [s for s in open_cards(db) if s.kind == Kind.MIXED]
    actions.undo(settings, done.action_id)
    assert real_files(root) == before
    # Moved back: the next scan finds the same mistake again, under the same id, open.
    scan(root, db)
    assert the_card(db).id == card.id


def test_a_new_folder_quarantine_and_all_his_own(namesake_copy):
    root, db = namesake_copy
    settings = _settings(root, db)
    before = real_files(root)
    card = the_card(db)
    group = _group_images(db, card)
    # A new folder, named on the card: made by the move, gone again with its undo.
    with pytest.raises(FileActionRefused, match="already"):
        mixed_card.move_group(settings, card, group, "Anthony_Hopkins")
    done = mixed_card.move_group(settings, card, group, "Sheldon_Cooper")
    assert sorted(p.name for p in (root / "Sheldon_Cooper").iterdir()) == [
        Path(p).name for p in sorted(NAMESAKE.values())
    ]
    with open_store(db, read_only=True, timeout=10) as con:
        # Not the matched folder: nothing is said of the photos and Sheldon's.
        assert con.execute("SELECT count(*) FROM decisions").fetchone() == (0,)
    actions.undo(settings, done.action_id)
    assert real_files(root) == before and not (root / "Sheldon_Cooper").exists()
    # Quarantine: the group leaves the data set as one batch.
    done = mixed_card.quarantine_group(settings, card, group)
    quarantined = {p for p in real_files(root) if p.startswith(settings.quarantine + "/")}
    assert len(quarantined) == 3 and not (real_files(root) & set(NAMESAKE.values()))
    actions.clear_suggestion(settings, card)
    assert real_files(root) == before
    # "They are all Anthony Hopkins": recorded, no file moves, and it stays decided.
    actions.record_suggestion(settings, card, Decision.REJECTED)
    assert real_files(root) == before
    scan(root, db)
    with open_store(db, read_only=True, timeout=10) as con:
        assert suggestions.get(con, card.id).state == State.REJECTED
    assert not [s for s in open_cards(db) if s.kind == Kind.MIXED]
