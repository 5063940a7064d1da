"""Issue 10: the keyboard queue's state, thousands of folders, search by photo, live
status, problems, and the command line around them. Real stores, real subprocesses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from store import decisions, meta
from store.connection import open_store
from store.queries import pairs_page
from store.queries.pairs_page import PairFilter
from tests.app_harness import (
    SHORT_LOCK_WAIT,
    app_test,
    as_read,
    shown,
    start,
    store_held_by_another_process,
)

FACELINT = Path(sys.executable).with_name("facelint")


def decision_of(db: Path, lo: int, hi: int) -> str | None:
    with open_store(db, read_only=True, timeout=5) as con:
        pair = next(
            p
            for p in pairs_page.pair_page(con, PairFilter(state="all"), 1000)
            if (p.lo, p.hi) == (lo, hi)
        )
        return decisions.decision_for(con, pair.a.hash, pair.b.hash)


# -- the queue -----------------------------------------------------------------------------


def test_toolbar_decides_the_focused_card_then_undo_and_next(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    at = start(monkeypatch, root, db)
    first = at.session_state["q_pairs_focus"]
    lo, hi = (int(x) for x in first.split("-"))
    at.button(key="q-pairs-skipped").click().run()
    assert decision_of(db, lo, hi) == "skipped"
    second = at.session_state["q_pairs_focus"]
    assert second != first and f"skipped-{second}" in [b.key for b in at.button]
    at.button(key="q-pairs-undo").click().run()
    assert decision_of(db, lo, hi) is None
    assert at.session_state["q_pairs_focus"] == first
    assert f"skipped-{first}" in [b.key for b in at.button]
    at.button(key="q-pairs-next").click().run()
    assert at.session_state["q_pairs_focus"] == second
    at.button(key="q-pairs-previous").click().run()
    assert at.session_state["q_pairs_focus"] == first
    # Deciding every card of the page loads the next page by itself.
    for _ in range(3):
        at.button(key="q-pairs-different").click().run()
        assert not at.exception
    keys = [b.key for b in at.button if b.key and b.key.startswith("different-")]
    assert len(keys) == 3 and f"different-{first}" not in keys
    with open_store(db, read_only=True, timeout=5) as con:
        left = pairs_page.count_pairs(con, PairFilter())
    assert f"{left:,} unreviewed pairs match" in shown(at)


def test_undo_refuses_when_the_decision_changed_since(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    at = start(monkeypatch, root, db)
    first = at.session_state["q_pairs_focus"]
    lo, hi = (int(x) for x in first.split("-"))
    at.button(key="q-pairs-skipped").click().run()
    pair = next(p for p in review_pairs(db) if (p.lo, p.hi) == (lo, hi))
    with open_store(db) as con:
        decisions.record_decision(con, pair.a.hash, pair.b.hash, "different", "someone else")
    at.button(key="q-pairs-undo").click().run()
    assert any("undo not done" in str(t.value) for t in at.toast)
    assert decision_of(db, lo, hi) == "different"


def review_pairs(db: Path) -> list[pairs_page.PairView]:
    with open_store(db, read_only=True, timeout=5) as con:
        return pairs_page.pair_page(con, PairFilter(state="all"), 1000)


# -- thousands of folders ------------------------------------------------------------------


def _many_folders(db: Path, n: int) -> None:
    with open_store(db) as con:
        con.execute(
            f"""INSERT INTO files (id, path, class, size, mtime_ns, hash, first_seen,
                                  last_seen, dirty, candidates)
                SELECT i, 'person_' || lpad(i::VARCHAR, 5, '0') || '/a.jpg',
                       'person_' || lpad(i::VARCHAR, 5, '0'), 1000, 1, md5(i::VARCHAR),
                       now(), now(), false, 0
                FROM generate_series(0, {n - 1}) t(i)"""
        )


def test_person_page_opens_the_5999th_of_6000_folders_by_typing(tmp_path, monkeypatch):
    root, db = tmp_path / "data", tmp_path / "f.duckdb"
    root.mkdir()
    _many_folders(db, 6000)
    at = start(monkeypatch, root, db)
    at.switch_page("views/person.py").run()
    assert not at.exception, at.exception
    # Every truncated list says so.
    assert "showing 1–200 of 6,000 classes" in shown(at)
    assert len(at.selectbox[0].options) == 200
    at.text_input(key="person_search").set_value("person_05998").run()
    assert not at.exception, at.exception
    assert at.selectbox[0].value == "person_05998"
    assert "## person_05998" in shown(at)
    assert at.query_params["name"] == "person_05998"
    # Part of a name narrows the list, and what is not shown is said.
    at.text_input(key="person_search").set_value("person_05").run()
    assert "showing 1–200 of 1,000 classes" in shown(at)


def test_bookmarked_person_url_opens_that_person(scanned_dev, monkeypatch):
    root, db = scanned_dev
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", str(db), "--root", str(root)])
    at = app_test()
    at.query_params["name"] = "Michael_Caine"
    at.run()
    at.switch_page("views/person.py").run()
    assert "## Michael_Caine" in shown(at)


def test_person_urls_and_searches_that_match_no_folder_say_so(dev_copy, run_scan, monkeypatch):
    """`?name=` in NFC opens a folder written in NFD; a name no folder has says "no such
    folder"; a search that matches nothing says so instead of showing the last folder."""
    import unicodedata

    root, db = dev_copy
    nfd = unicodedata.normalize("NFD", "長谷川ガク")
    (root / "Michael_Caine").rename(root / nfd)
    (root / "Anthony_Hopkins" / "Anthony_Hopkins_0002.jpg").unlink()
    run_scan(root, db)
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", str(db), "--root", str(root)])
    at = app_test()
    at.query_params["name"] = "長谷川ガク"
    at.run()
    at.switch_page("views/person.py").run()
    assert not at.exception, at.exception
    assert f"## {nfd}" in shown(at)
    at.text_input(key="person_search").set_value("xyz_nobody").run()
    text = shown(at)
    assert "No folder matches “xyz_nobody”." in text and f"## {nfd}" not in text
    at.text_input(key="person_search").set_value("").run()
    at.query_params["name"] = "Nobody_Here"
    at.run()
    text = shown(at)
    assert "no such folder: Nobody_Here" in text and "## Nobody_Here" not in text
    # One image is "1 image".
    at.text_input(key="person_search").set_value("anthony").run()
    assert at.selectbox[0].options == ["Anthony_Hopkins (1 image)"]
    assert "1 image" in [c.value for c in at.caption]


def test_busy_store_keeps_the_page_and_says_why(dev_copy, monkeypatch):
    # Its own copy: the holder below takes the write lock, which the session's store
    # (read by the other worker's tests at any moment) must never have.
    root, db = dev_copy
    # Busy is busy however long the wait: a short one (the waiting: test_store_lock.py).
    at = start(monkeypatch, root, db, *SHORT_LOCK_WAIT)
    at.switch_page("views/person.py").run()
    before = at.selectbox[0].options
    with store_held_by_another_process(db):
        at.run()
        assert not at.exception
        text = shown(at)
        assert "updating… the daemon (or another program) is writing to the store" in text
        assert at.selectbox[0].options == before
        assert "lock" not in text.lower()


# -- problems ------------------------------------------------------------------------------


def test_problems_lists_whole_picture_images_and_pages_hubs(dev_copy, monkeypatch):
    root, db = dev_copy
    with open_store(db) as con:
        con.execute(
            """UPDATE embeddings SET whole_image = true
               WHERE hash = (SELECT hash FROM files WHERE path = 'Amy/amy1.png')"""
        )
        meta.set_meta(con, max_pairs_per_image=1)
    at = start(monkeypatch, root, db)
    at.switch_page("views/problems.py").run()
    text = shown(at)
    assert "Amy** / amy1.png" in text
    assert "whole_image: no face box found" in text
    assert "hubs: showing 1–" in text
    at.multiselect(key="problem_statuses").set_value(["whole_image"]).run()
    assert "problem images: showing 1–1 of 1" in shown(at)


# -- live status ---------------------------------------------------------------------------


def test_status_says_progress_from_the_status_file_and_without_it(
    scanned_dev, monkeypatch, tmp_path
):
    root, db = scanned_dev
    status = tmp_path / "status.json"
    live = {"state": "encoding", "heartbeat": time.time(), "message": "12 new images"}
    status.write_text(json.dumps(live), encoding="utf-8")
    at = start(monkeypatch, root, db, "--status-file", str(status))
    at.switch_page("views/status.py").run()
    assert "[info] daemon encoding: 12 new images" in shown(at)
    progress = {"stage": "encoding", "done": 1234, "total": 5000, "rate": 30.0, "eta_s": 125}
    status.write_text(json.dumps(live | {"progress": progress}), encoding="utf-8")
    at.run()
    assert "[info] encoding 1,234 of 5,000, about 2 min left" in shown(at)
    # A malformed progress block is tolerated.
    status.write_text(json.dumps(live | {"progress": {"done": "x"}}), encoding="utf-8")
    at.run()
    assert not at.exception and "[info] daemon encoding" in shown(at)
    # Moments to the second, and the histogram's axis in rounded scores.
    text = shown(at)
    assert re.search(r"images at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", text), text
    assert not re.search(r"\d\d:\d\d:\d\d\.\d", text)
    (chart,) = at.get("vega_lite_chart")
    scores = _chart_column(chart.proto, "score")
    assert scores and all(re.fullmatch(r"[01]\.\d\d", str(v)) for v in scores), scores


def _chart_column(proto: object, column: str) -> list:
    """A column of the data a Vega-Lite chart was sent (Arrow IPC bytes in its proto)."""
    import pyarrow as pa

    blobs = [proto.data.data] if proto.data.data else []  # type: ignore[attr-defined]
    blobs += [d.data.data for d in proto.datasets]  # type: ignore[attr-defined]
    for blob in blobs:
        table = pa.ipc.open_stream(blob).read_all()
        for name in table.column_names:
            if name == column or name.endswith(column):
                return table.column(name).to_pylist()
    return []


# -- search by photo -----------------------------------------------------------------------


def _variants(root: Path, tmp_path: Path) -> list[Path]:
    """A flipped and a re-encoded (smaller, lower-quality JPEG) copy of a dev face: files
    the store does not hold."""
    source = root / "Anthony_Hopkins" / "Anthony_Hopkins_0001.jpg"
    with Image.open(source) as im:
        rgb = im.convert("RGB")
    flipped, recoded = tmp_path / "flipped.jpg", tmp_path / "recoded.jpg"
    ImageOps.mirror(rgb).save(flipped, quality=90)
    rgb.resize((rgb.width * 4 // 5, rgb.height * 4 // 5)).save(recoded, quality=55)
    return [flipped, recoded]


def test_search_by_photo_lists_that_persons_folder_first(scanned_dev, tmp_path):
    """Each variant once (each search loads the model: seconds of CPU): the flipped copy
    as JSON, ranked; the re-encoded one as the table a terminal shows."""
    root, db = scanned_dev
    flipped, recoded = _variants(root, tmp_path)
    done = subprocess.run(
        [str(FACELINT), "search", str(flipped), "--db", str(db), "-n", "5", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["faces"] == 1 and len(found["results"]) == 5
    first = found["results"][0]
    assert first["folder"] == "Anthony_Hopkins", found
    assert first["path"].startswith("Anthony_Hopkins/")
    scores = [r["score"] for r in found["results"]]
    assert scores == sorted(scores, reverse=True) and first["score"] > 0.4
    table = subprocess.run(
        [str(FACELINT), "search", str(recoded), "--db", str(db), "-n", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    ).stdout
    assert "Anthony_Hopkins/Anthony_Hopkins_0001.jpg" in table.splitlines()[2], table


def test_search_through_the_dashboard_runs_the_cli(scanned_dev, tmp_path):
    from dashboard.settings import parse_args
    from dashboard.views.search import run_search

    root, db = scanned_dev
    settings = parse_args(["--db", str(db), "--root", str(root)])
    found = run_search(settings, _variants(root, tmp_path)[0], 3)
    assert found["results"][0]["folder"] == "Anthony_Hopkins"
    with pytest.raises(RuntimeError, match="no usable face"):
        run_search(settings, root / "Charlton_Heston" / "pilatus800.jpg", 3)


# -- the command line ----------------------------------------------------------------------


def test_version_and_human_status(scanned_dev, tmp_path, capsys, monkeypatch):
    # In-process (the installed script runs in the search tests above): each interpreter
    # started and importing facelint costs ~0.5 CPU-s.
    from daemon.cli import main

    _, db = scanned_dev
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("facelint ")
    assert main(["status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    # A table: the label padded to 18 characters, then the value.
    lines = {line[:18].strip(): line[18:] for line in out.splitlines()}
    assert lines["state"].strip() == "daemon not running"
    assert lines["temperature"].strip() == "no sensor"
    assert lines["images"].strip() == "71"
    assert main(["status", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 71
    # The review queue and what the threshold means, from the store.
    assert "same_person 1" in lines["open suggestions"]
    assert "false matches per image" in lines["at the threshold"]


def test_human_status_units():
    from daemon.cli import human_status

    now = 1_000_000.0
    rows = dict(
        human_status(
            {
                "state": "idle",
                "heartbeat": now - 4,
                "last_reconcile": now - 7200,
                "temperature": 61.4,
                "throughput": 12.345,
                "images": 12345,
                "progress": {"stage": "encoding", "done": 1234, "total": 5000, "eta_s": 120},
                "switch": {"serving": "dlib", "to": "arcface", "encoded": 10, "total": 71},
            },
            now,
        )
    )
    assert rows["progress"] == "encoding 1,234 of 5,000, about 2 min left"
    assert rows["model switch"] == "dlib serves while arcface encodes: 10 of 71"
    assert rows["heartbeat"] == "4 s ago" and rows["last reconcile"] == "2.0 h ago"
    assert rows["temperature"] == "61 °C" and rows["throughput"] == "12.3 images/s"
    assert rows["images"] == "12,345"


@pytest.mark.parametrize("command", ["dashboard", "up"])
def test_every_dashboard_flag_reaches_the_settings(command, tmp_path):
    from daemon.cli import build_parser, settings_from
    from daemon.launch import dashboard_command
    from dashboard.settings import parse_args

    args = build_parser().parse_args(
        [
            command,
            *("--db", str(tmp_path / "s.duckdb"), "--allow-file-actions"),
            *("--quarantine", "trash", "--port", "8123", "--address", "127.0.0.2"),
        ]
    )
    s = settings_from(args)
    assert (s.allow_file_actions, s.quarantine, s.port, s.address) == (
        True,
        "trash",
        8123,
        "127.0.0.2",
    )
    cmd = dashboard_command(s)
    got = parse_args(cmd[cmd.index("--") + 1 :])
    assert got.allow_file_actions and got.quarantine == "trash"


def test_every_flag_has_help():
    import argparse

    from daemon.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, p in sub.choices.items()
        for action in p._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_pairs_page_jumps_to_a_page_by_number(scanned_dev_loose, monkeypatch):
    root, db = scanned_dev_loose
    with open_store(db, read_only=True, timeout=5) as con:
        every = pairs_page.pair_page(con, PairFilter(), 1000)
    at = start(monkeypatch, root, db)
    pages = -(-len(every) // 3)
    assert f"page 1 of {pages}: go to page" in [n.label for n in at.number_input]
    at.number_input[0].set_value(5)
    next(b for b in at.button if b.label == "go").click().run()
    assert not at.exception, at.exception
    assert "showing 13–15" in shown(at)
    keys = [b.key for b in at.button if b.key and b.key.startswith("different-")]
    assert keys == [f"different-{p.lo}-{p.hi}" for p in every[12:15]]
    at.button(key="pairs-prev").click().run()
    assert "showing 10–12" in shown(at)
    keys = [b.key for b in at.button if b.key and b.key.startswith("different-")]
    assert keys == [f"different-{p.lo}-{p.hi}" for p in every[9:12]]


def test_one_image_matching_a_whole_folder_is_decided_in_one_go(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    at = start(monkeypatch, root, db)
    # biden2.jpg (Joe_Biden) matches all 5 images of Joseph_Biden.
    assert "biden2.jpg matches 5 images of Joseph_Biden" in shown(at)
    key = next(b.key for b in at.button if b.key and b.key.startswith("group-different-a-"))
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    with open_store(db, read_only=True, timeout=5) as con:
        different = pairs_page.pair_page(con, PairFilter(state="different"), 100)
    assert sorted(p.b.path for p in different if p.a.path == "Joe_Biden/biden2.jpg") == [
        f"Joseph_Biden/Joseph_Biden_000{i}.jpg" for i in range(1, 6)
    ]
    assert any("5 images of Joseph_Biden: different" in as_read(t.value) for t in at.toast)
