"""The second attack on the dashboard (issue 16): images the encoder refused, files
replaced under a card, folder names tampered into the store, markdown in names. The
dashboard run by Streamlit's AppTest on real stores scanned from tests/faces, real files
moved in temp copies. (The same names in a real Chromium: tests/test_dashboard_serving.py.)"""

from __future__ import annotations

import re
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard import actions, ui
from dashboard.cards import misfiled, same_person
from dashboard.files import FileActionRefused
from dashboard.settings import DashboardSettings, parse_args
from store import actions as action_log
from store import decisions, suggestions
from store.connection import open_store
from store.queries import images as image_rows
from store.queries import pairs_page
from store.queries.pairs_page import PairFilter, PairView
from tests import app_harness as harness
from tests.app_harness import as_read, markdown_source

BOMB = "decompression bomb refused"
# A 10000² image is refused at its header, never decoded: by Pillow's own bomb check
# (turned into a refusal) or, should that only warn, by max_pixels.
OVER = re.compile(
    r"(image is 10000x10000 = 100,000,000 pixels, over the limit of 60,000,000"
    r"|decompression bomb refused: Image size \(100000000 pixels\) exceeds limit)"
)
BIDEN = ("Joe_Biden", "Joseph_Biden")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width×height pixels in a few bytes, as a decompression bomb does."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def big_png(path: Path) -> None:
    """A real, decodable 10000×10000 PNG (1 bit a pixel, ~20 kB): only the limit stops it."""
    Image.new("1", (10000, 10000)).save(path, format="PNG")


def settings_for(root: Path, db: Path, *extra: str) -> DashboardSettings:
    return parse_args(["--db", str(db), "--root", str(root), "--user", "tester", *extra])


def warnings(at: AppTest) -> list[str]:
    return [as_read(w.value) for w in at.warning] + [as_read(e.value) for e in at.error]


def toasts(at: AppTest) -> list[str]:
    return [as_read(str(t.value)) for t in at.toast]


def listing(root: Path) -> dict[str, bytes]:
    """Every file under the root and its content: what a refused action must leave."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def logged(db: Path) -> list[action_log.ActionRow]:
    with open_store(db, read_only=True, timeout=5) as con:
        return action_log.recent_actions(con)


def suggestion(db: Path, kind: str) -> suggestions.Suggestion:
    with open_store(db, read_only=True, timeout=5) as con:
        (found,) = [s for s in suggestions.queue(con, "all", [kind], 100) if s.kind == kind]
        return found


def state_of(db: Path, sid: str) -> str:
    with open_store(db, read_only=True, timeout=5) as con:
        s = suggestions.get(con, sid)
        assert s is not None
        return s.state


def top_pair(db: Path) -> PairView:
    with open_store(db, read_only=True, timeout=5) as con:
        return pairs_page.pair_page(con, PairFilter(), 1)[0]


def pair_decision(db: Path, pair: PairView) -> str | None:
    with open_store(db, read_only=True, timeout=5) as con:
        return decisions.decision_for(con, pair.a.hash, pair.b.hash)


# -- item 2: a refused image never crashes a page --------------------------------------------


def _your_photo(data: bytes) -> None:
    from dashboard.settings import parse_args
    from dashboard.views.search import _your_photo

    _your_photo(parse_args([]), data)


def test_refused_images_get_words_on_every_page_never_a_traceback(dev_copy, run_scan, monkeypatch):
    root, db = dev_copy
    bomb = png_header_only(30000, 30000)
    # Refused by the encoder as it scans them: listed on Problems and in Amy's grid.
    (root / "Amy" / "bomb.png").write_bytes(bomb)
    big_png(root / "Amy" / "big.png")
    run_scan(root, db)
    # Put in place of images the store paired and suggested: the Review card, the Pairs
    # queue and Joe_Biden's grid show them before the daemon has caught up.
    (root / "Joe_Biden" / "biden2.jpg").write_bytes(bomb)
    big_png(root / "Joseph_Biden" / "Joseph_Biden_0004.jpg")
    bomb_words = f"Joe_Biden/biden2.jpg: cannot show this image ({BOMB}"

    def big(path: str, said: list[str]) -> bool:
        prefix = f"{path}: cannot show this image ("
        return any(w.startswith(prefix) and OVER.match(w[len(prefix) :]) for w in said)

    at = harness.start(monkeypatch, root, db, page=None, page_size=None)  # Review
    assert not at.exception, at.exception
    said = warnings(at)
    assert any(w.startswith(bomb_words) for w in said), said
    assert big("Joseph_Biden/Joseph_Biden_0004.jpg", said), said

    at.switch_page("views/pairs.py").run()
    assert not at.exception, at.exception
    said = warnings(at)
    assert any(w.startswith(bomb_words) for w in said), said
    assert big("Joseph_Biden/Joseph_Biden_0004.jpg", said), said

    at.switch_page("views/problems.py").run()
    assert not at.exception, at.exception
    said = warnings(at)
    assert any(w.startswith(f"Amy/bomb.png: cannot show this image ({BOMB}") for w in said)
    assert big("Amy/big.png", said), said
    text = harness.shown(at)
    assert re.search(f"unreadable: {OVER.pattern}", text) and f"unreadable: {BOMB}" in text

    at.switch_page("views/person.py").run()
    for name, bad in (("Amy", "Amy/big.png"), ("Joe_Biden", "Joe_Biden/biden2.jpg")):
        at.text_input(key="person_search").set_value(name).run()
        assert not at.exception, at.exception
        assert any(w.startswith(f"{bad}: cannot show this image") for w in warnings(at))

    # Search by photo: an uploaded bomb is not decoded by Streamlit's st.image either.
    for data, why in ((bomb, BOMB), ((root / "Amy" / "big.png").read_bytes(), OVER.pattern)):
        at = AppTest.from_function(_your_photo, args=(data,), default_timeout=30).run()
        assert not at.exception, at.exception
        assert [w for w in warnings(at) if w.startswith("your photo cannot be shown: ")]
        assert re.search(why, warnings(at)[0]), warnings(at)


# -- item 3: every file action checks what it moves --------------------------------------------


def _planted(dev_copy, run_scan) -> tuple[Path, Path]:
    """A copy of Penny's photo in Raj's folder, and Obama's photo filed under Sheldon."""
    root, db = dev_copy
    shutil.copy2(root / "Penny" / "penny1.png", root / "Raj" / "penny1.png")
    (root / "Barack_Obama" / "obama1.jpg").rename(root / "Sheldon" / "obama1.jpg")
    run_scan(root, db)
    return root, db


def test_a_file_replaced_under_a_misfiled_card_is_not_moved(dev_copy, run_scan, monkeypatch):
    """Obama's photo is suggested out of Sheldon's folder; before "move image" someone puts
    Sheldon's own photo in its place: neither move nor quarantine takes it, nothing is
    recorded."""
    root, db = _planted(dev_copy, run_scan)
    mis = suggestion(db, "misfiled")
    assert mis.path == "Sheldon/obama1.jpg"
    at = harness.start(monkeypatch, root, db, "--allow-file-actions", page=None, page_size=None)
    at.multiselect(key="m_kinds").set_value(["misfiled"]).run()
    shutil.copy2(root / "Sheldon" / "sheldon1.png", root / "Sheldon" / "obama1.jpg")
    before = listing(root)
    for value in ("accept", "quarantine"):
        at.button(key=f"q-mistakes-{value}").click().run()
        assert not at.exception, at.exception
        assert any(
            "not done: Sheldon/obama1.jpg is not the image reviewed" in t for t in toasts(at)
        ), toasts(at)
        assert listing(root) == before
        assert state_of(db, mis.id) == "open" and logged(db) == []


def test_a_file_replaced_under_a_duplicate_card_is_not_quarantined(dev_copy, run_scan):
    root, db = _planted(dev_copy, run_scan)
    dup = suggestion(db, "duplicate")
    assert dup.path == "Raj/penny1.png"
    (root / "Raj" / "penny1.png").write_bytes((root / "Raj" / "raj1.png").read_bytes())
    before = listing(root)
    settings = settings_for(root, db, "--allow-file-actions")
    with pytest.raises(FileActionRefused, match="is not the image reviewed"):
        actions.quarantine_image(settings, dup)
    assert listing(root) == before
    assert state_of(db, dup.id) == "open" and logged(db) == []


def test_a_file_replaced_under_a_pair_is_neither_moved_nor_removed(dev_copy):
    root, db = dev_copy
    pair = top_pair(db)
    settings = settings_for(root, db, "--allow-file-actions")
    (root / pair.a.path).write_bytes((root / "Amy" / "amy1.png").read_bytes())
    (root / pair.b.path).write_bytes((root / "Amy" / "amy2.png").read_bytes())
    before = listing(root)
    for act, side in ((actions.relabel, "a"), (actions.quarantine, "a"), (actions.quarantine, "b")):
        with pytest.raises(FileActionRefused, match="is not the image reviewed"):
            act(settings, pair, side)
    assert listing(root) == before
    assert pair_decision(db, pair) is None and logged(db) == []


def test_a_merge_refuses_a_replaced_file_or_one_never_scanned(dev_copy):
    root, db = dev_copy
    biden = suggestion(db, "same_person")
    settings = settings_for(root, db, "--allow-file-actions")
    original = (root / "Joe_Biden" / "biden.jpg").read_bytes()
    (root / "Joe_Biden" / "biden.jpg").write_bytes((root / "Amy" / "amy1.png").read_bytes())
    before = listing(root)
    with pytest.raises(
        FileActionRefused, match=re.escape("Joe_Biden/biden.jpg is not the image reviewed")
    ):
        same_person.merge(settings, biden, "Joseph_Biden")
    assert listing(root) == before
    assert state_of(db, biden.id) == "open" and logged(db) == []

    # An image added since the scan was never reviewed as this person either.
    (root / "Joe_Biden" / "biden.jpg").write_bytes(original)
    shutil.copy2(root / "Amy" / "amy3.png", root / "Joe_Biden" / "new.png")
    before = listing(root)
    with pytest.raises(
        FileActionRefused, match=re.escape("Joe_Biden/new.png is not in the store yet")
    ):
        same_person.merge(settings, biden, "Joseph_Biden")
    assert listing(root) == before and logged(db) == []

    (root / "Joe_Biden" / "new.png").unlink()
    with open_store(db, read_only=True, timeout=5) as con:
        stored = image_rows.images_by_path(
            con, [f"Joe_Biden/{n}" for n in ("biden.jpg", "biden2.jpg")]
        )
    done = same_person.merge(settings, biden, "Joseph_Biden")
    assert "2 files moved" in done.message
    # Each move logged with the content it moved: what its undo may move back.
    assert {(a.src, a.hash) for a in logged(db)} == {(p, i.hash) for p, i in stored.items()}


def test_an_undo_moves_back_only_the_content_it_moved(dev_copy):
    root, db = dev_copy
    pair = top_pair(db)
    settings = settings_for(root, db, "--allow-file-actions")
    done = actions.relabel(settings, pair, "a")
    (move,) = logged(db)
    assert move.hash == pair.a.hash
    moved_to = root / move.dst
    moved_to.write_bytes((root / "Amy" / "amy1.png").read_bytes())  # swapped meanwhile
    before = listing(root)
    assert done.action_id is not None
    with pytest.raises(FileActionRefused, match=re.escape(f"{move.dst} is not the image reviewed")):
        actions.undo(settings, done.action_id)
    assert listing(root) == before
    (move,) = logged(db)
    assert move.undoable and pair_decision(db, pair) == "same"


def test_a_folder_name_dot_tampered_into_the_store_makes_a_merge_refuse(dev_copy):
    """`UPDATE folders SET name = '.'` for Joe_Biden: merging it into Joseph_Biden would
    walk the root itself and move every file of the data set into one folder."""
    root, db = dev_copy
    sid = suggestion(db, "same_person").id
    settings = settings_for(root, db, "--allow-file-actions")
    before = listing(root)
    for bad in (".", "..", ".hidden", "a/b", "a\\b", ""):
        with open_store(db) as con:
            con.execute(
                """UPDATE folders SET name = ?
                   WHERE id = (SELECT folder_a FROM suggestion_rows WHERE id = ?)""",
                [bad, sid],
            )
        biden = suggestion(db, "same_person")
        assert biden.class_a == bad
        with pytest.raises(FileActionRefused, match="not a single plain folder name"):
            same_person.merge(settings, biden, str(biden.class_b))
        assert listing(root) == before and logged(db) == []
        assert state_of(db, sid) == "open"


def test_a_hidden_proposed_folder_tampered_into_the_store_is_refused(dev_copy, run_scan):
    """The proposed folder of a misfiled image renamed `.cache` in the store (and there on
    disk): the image would leave the data set unseen (scans skip hidden folders)."""
    root, db = _planted(dev_copy, run_scan)
    mis = suggestion(db, "misfiled")
    (root / ".cache").mkdir()
    with open_store(db) as con:
        con.execute(
            """UPDATE folders SET name = '.cache'
               WHERE id = (SELECT folder_b FROM suggestion_rows WHERE id = ?)""",
            [mis.id],
        )
    mis = suggestion(db, "misfiled")
    assert mis.class_b == ".cache"
    before = listing(root)
    with pytest.raises(FileActionRefused, match="not a single plain folder name"):
        misfiled.move_image(settings_for(root, db, "--allow-file-actions"), mis)
    assert listing(root) == before and logged(db) == []


# -- item 9: names are shown as typed ----------------------------------------------------------

PAYLOADS = (
    "![x](http://127.0.0.1:9/x.png)",
    "[session expired, sign in](http://127.0.0.1:9/)",
    "_Joe_Biden_",
    "<img src=x onerror=alert(1)>",
    "**bold**",
    "a\n# heading",
    "mail x@y.com, visit www.example.com or HTTPS://example.com",
)


@pytest.mark.parametrize("text", PAYLOADS)
def test_md_leaves_no_markdown_in_a_name(text):
    escaped = ui.md(text)
    assert as_read(escaped) == text.replace("\n", "\\n")
    # No construct can start: every special character is escaped, no line break is left.
    assert "\n" not in escaped
    # Nor can GFM make a link of an address in the text once the escapes are read.
    assert not re.search(r"(?i)https?:|www\.|[\w.+-]@", escaped.replace("\\", "")), escaped
    for i, c in enumerate(escaped):
        if c in "![]()<>*_#:&@`$~|{}+-.":
            assert escaped[i - 1] == "\\", (text, escaped)


@pytest.mark.parametrize("name", PAYLOADS[:2])
def test_person_page_shows_a_name_from_the_url_as_typed(scanned_dev, monkeypatch, name):
    root, db = scanned_dev
    at = harness.start(monkeypatch, root, db, page=None)
    at.query_params["name"] = name
    at.switch_page("views/person.py").run()
    assert not at.exception, at.exception
    source = markdown_source(at)
    # No folder has that name: said, with the name as typed (issue 15).
    assert any(ui.md(f"no such folder: {name}") in str(w.value) for w in at.warning)
    # Nothing of the name reaches the markdown unescaped.
    assert name not in source and "](http://127" not in source


# -- item 11: the Host header (the websocket itself: tests/test_dashboard_serving.py) ---------


def test_the_dashboard_answers_to_its_own_address_and_named_hosts_only(tmp_path):
    from daemon.config import ConfigError, Settings, load_settings
    from daemon.launch import dashboard_command

    def hosts(s: Settings) -> list[str]:
        cmd = dashboard_command(s)
        return [cmd[i + 1] for i, a in enumerate(cmd) if a == "--server.allowedHosts"]

    def option(s: Settings, name: str) -> str:
        cmd = dashboard_command(s)
        return cmd[cmd.index(name) + 1]

    local = Settings(db=tmp_path / "s.duckdb")
    assert hosts(local) == ["127.0.0.1", "::1", "localhost"]
    assert option(local, "--server.enableCORS") == "true"
    assert option(local, "--server.enableXsrfProtection") == "true"
    lan = Settings(db=tmp_path / "s.duckdb", address="192.168.1.5", allowed_hosts="Review.LAN")
    assert {"192.168.1.5", "review.lan", "localhost"} <= set(hosts(lan))
    import socket

    every = Settings(db=tmp_path / "s.duckdb", address="0.0.0.0")
    assert socket.gethostname().lower() in hosts(every) and "0.0.0.0" not in hosts(every)
    # "*" would accept any Host again: refused with the setting named.
    cfg = tmp_path / "facelint.toml"
    cfg.write_text('allowed_hosts = ["*"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="allowed_hosts"):
        load_settings(cfg, env={})


def test_an_action_logged_before_hashes_were_kept_is_undone_by_the_pairs_content(dev_copy):
    """Actions from before store schema 5 have no `hash`: their undo checks the file
    against the pair's two images instead, and still refuses anything else."""
    root, db = dev_copy
    pair = top_pair(db)
    settings = settings_for(root, db, "--allow-file-actions")
    done = actions.relabel(settings, pair, "a")
    assert done.action_id is not None
    with open_store(db) as con:
        con.execute("UPDATE actions SET hash = NULL")
    (move,) = logged(db)
    original = (root / move.dst).read_bytes()
    (root / move.dst).write_bytes((root / "Amy" / "amy1.png").read_bytes())
    with pytest.raises(FileActionRefused, match="is not the image reviewed"):
        actions.undo(settings, done.action_id)
    (root / move.dst).write_bytes(original)
    actions.undo(settings, done.action_id)
    assert (root / pair.a.path).read_bytes() == original and not (root / move.dst).exists()
