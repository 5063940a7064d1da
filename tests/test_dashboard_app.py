"""The dashboard run headless by Streamlit's own AppTest, on real stores scanned from
tests/faces, with real files moved in temp copies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import actions, files
from dashboard.files import FileActionRefused, UnsafePath
from dashboard.settings import SettingsError, parse_args
from store import actions as action_log
from store import decisions, meta
from store.connection import open_store
from store.queries import images as image_rows
from store.queries import pairs_page
from store.queries.pairs_page import PairFilter, PairView
from tests.app_harness import (
    APP,
    SHORT_LOCK_WAIT,
    app_test,
    as_read,
    captions,
    shown,
    start,
    store_held_by_another_process,
)
from tests.conftest import LOOSE_THRESHOLD, REPO

PAGE_FILES = {
    "Pairs": "views/pairs.py",
    "Person": "views/person.py",
    "Problems": "views/problems.py",
    "Search": "views/search.py",
    "Status": "views/status.py",
    "File actions": "views/log.py",
}


def goto(at: AppTest, page: str) -> AppTest:
    at.switch_page(PAGE_FILES[page]).run()
    assert not at.exception, at.exception
    return at


def toasts(at: AppTest) -> list[str]:
    return [as_read(str(t.value)) for t in at.toast]


def card_keys(at: AppTest) -> list[str]:
    """The open cards of the pairs queue, in order, as "lo-hi"."""
    return [k.removeprefix("different-") for k in button_keys(at) if k.startswith("different-")]


def button_keys(at: AppTest) -> list[str]:
    return [b.key for b in at.button if b.key]


def unreviewed(db: Path, n: int = 1000) -> list[PairView]:
    with open_store(db, read_only=True, timeout=5) as con:
        return pairs_page.pair_page(con, PairFilter(), n)


def actions_log(db: Path) -> list[action_log.ActionRow]:
    with open_store(db, read_only=True, timeout=5) as con:
        return action_log.recent_actions(con)


def decision(db: Path, pair: PairView) -> str | None:
    with open_store(db, read_only=True, timeout=5) as con:
        return decisions.decision_for(con, pair.a.hash, pair.b.hash)


# -- every page ----------------------------------------------------------------------------


def test_every_page_renders_against_a_scanned_store(scanned_dev_loose, monkeypatch):
    root, db = scanned_dev_loose
    at = start(monkeypatch, root, db)
    text = shown(at)
    assert "unreviewed pairs match" in text
    # The planted mistake comes first, both names, both files, a web search per name.
    assert text.index("Joe_Biden") < text.index("Joseph_Biden")
    assert "https://www.google.com/search?tbm=isch&q=Joe+Biden" in text
    assert captions(at)[:2] == ["biden2.jpg", "Joseph_Biden_0004.jpg"]
    assert len(captions(at)) == 6  # three pairs of two
    assert "File actions are off" in text
    assert not [k for k in button_keys(at) if k.startswith(("move-", "remove-"))]
    assert len(card_keys(at)) == 3
    # The score slider starts at the store's threshold: nothing below it is stored.
    assert at.slider(key="f_score").value == (LOOSE_THRESHOLD, 1.0)
    assert at.slider(key="f_score").min == LOOSE_THRESHOLD

    goto(at, "Person")
    at.text_input(key="person_search").set_value("Joseph_Biden").run()
    text = shown(at)
    assert "5 images" in text and "q=Joseph+Biden" in text
    assert sorted(captions(at)) == [f"Joseph_Biden_000{i}.jpg" for i in range(1, 6)]
    assert "Pairs involving Joseph_Biden" in text
    assert len(at.dataframe) == 1
    # Pairs of one image with one other class are one row.
    rows = at.dataframe[0].value
    # The Biden rows: each Joseph_Biden image against both Joe_Biden images.
    assert sorted(m for m in rows["matches"] if "Joe_Biden" in m) == ["2 images of Joe_Biden"] * 5

    goto(at, "Problems")
    text = shown(at)
    assert "no_face: no face detected" in text
    assert "Charlton_Heston" in text and "pilatus800" in text
    assert "multi_face" in text

    goto(at, "Status")
    text = shown(at)
    assert "[error] daemon not running (no status file" in text
    assert {m.label: m.value for m in at.metric}["images"] == "71"
    assert "Scores" in text and len(at.get("vega_lite_chart")) == 1

    goto(at, "File actions")
    assert "No file action yet" in shown(at)


def test_status_page_reads_the_daemon_status_file(scanned_dev_loose, monkeypatch, tmp_path):
    root, db = scanned_dev_loose
    status = tmp_path / "status.json"
    live = {
        "state": "encoding",
        "heartbeat": time.time(),
        "pid": 4242,
        "queue": 12,
        "throughput": 3.5,
        "throttled": False,
        "temperature": 55.0,
        "last_reconcile": time.time() - 30,
        "message": "encoding 12 new images",
        "encoded_total": 71,
        "images": 71,
        "pairs": 35,
    }
    status.write_text(json.dumps(live), encoding="utf-8")
    at = goto(start(monkeypatch, root, db, "--status-file", str(status)), "Status")
    text = shown(at)
    assert "[success] daemon running" in text
    metrics = {m.label: as_read(m.value) for m in at.metric}
    assert metrics["state"] == "encoding" and metrics["queue"] == "12"
    assert metrics["temperature"] == "55.0 °C"
    assert "Calibration" in text
    # What the threshold means on this store: ~0.1 false matches per image by design.
    false_rate = float(metrics[f"false matches per image at {LOOSE_THRESHOLD:g}"])
    assert false_rate > 0 and metrics["estimated recall"].endswith("%")
    status.write_text(json.dumps(live | {"heartbeat": time.time() - 120}), encoding="utf-8")
    at.run()
    assert "[error] daemon not running (last heartbeat 120 s ago)" in shown(at)


def test_bad_arguments_are_shown_not_raised(scanned_dev_loose, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["app.py", "--db", "x.duckdb", "--frobnicate"])
    at = app_test(30).run()
    assert not at.exception
    assert "unknown arguments: --frobnicate" in as_read(at.error[0].value)
    with pytest.raises(SettingsError, match="plain folder name"):
        parse_args(["--quarantine", "../elsewhere"])


# -- decisions -----------------------------------------------------------------------------


def test_different_people_is_stored_and_hides_the_pair(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    before = unreviewed(db)
    top = before[0]
    at = start(monkeypatch, root, db)
    at.button(key=f"different-{top.lo}-{top.hi}").click().run()
    assert not at.exception
    assert decision(db, top) == "different"
    after = unreviewed(db)
    assert len(after) == len(before) - 1 and (top.lo, top.hi) not in {(p.lo, p.hi) for p in after}
    # The card collapses in place to its decision; the next one is still there.
    assert f"different-{top.lo}-{top.hi}" not in button_keys(at)
    assert f"different-{after[0].lo}-{after[0].hi}" in button_keys(at)
    assert "biden2.jpg / Joseph_Biden_0004.jpg: different" in toasts(at)
    assert "✓ different people — Joe_Biden/biden2.jpg / Joseph_Biden/Joseph_Biden_0004.jpg" in (
        shown(at)
    )
    assert actions_log(db) == []  # a decision moves no file
    # Still there for whoever looks for it.
    at.selectbox(key="f_state").set_value("different").run()
    assert button_keys(at).count(f"clear-{top.lo}-{top.hi}") == 1


def test_skip_leaves_the_queue_until_cleared(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    top = unreviewed(db)[0]
    at = start(monkeypatch, root, db)
    at.button(key=f"skipped-{top.lo}-{top.hi}").click().run()
    assert decision(db, top) == "skipped"
    assert f"skipped-{top.lo}-{top.hi}" not in button_keys(at)
    at.selectbox(key="f_state").set_value("skipped").run()
    assert "1 skipped pairs match" in shown(at)
    at.button(key=f"clear-{top.lo}-{top.hi}").click().run()
    assert decision(db, top) is None
    at.selectbox(key="f_state").set_value("unreviewed").run()
    assert card_keys(at)[:1] == [f"{top.lo}-{top.hi}"]


def test_filters_and_paging(scanned_dev_loose, monkeypatch):
    root, db = scanned_dev_loose
    every = unreviewed(db)
    at = start(monkeypatch, root, db)
    at.button(key="pairs-next").click().run()
    assert f"different-{every[3].lo}-{every[3].hi}" in button_keys(at)
    assert "showing 4–6" in shown(at)
    at.button(key="pairs-prev").click().run()
    assert "showing 1–3" in shown(at)
    at.text_input(key="f_search").set_value("raj").run()
    text = shown(at)
    assert "Joe_Biden" not in text and "Raj" in text
    at.slider(key="f_score").set_value((0.95, 1.0)).run()
    assert "No unreviewed pairs match." in shown(at)


# -- file actions --------------------------------------------------------------------------


def test_move_moves_the_file_and_undo_restores_it(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    top = unreviewed(db)[0]
    src, dst = root / "Joe_Biden" / "biden2.jpg", root / "Joseph_Biden" / "biden2.jpg"
    content = src.read_bytes()
    at = start(monkeypatch, root, db, "--allow-file-actions")
    at.button(key=f"move-a-{top.lo}-{top.hi}").click().run()
    assert not at.exception
    assert not src.exists() and dst.read_bytes() == content
    (move,) = actions_log(db)
    assert (move.action, move.src, move.dst, move.who) == (
        "move",
        "Joe_Biden/biden2.jpg",
        "Joseph_Biden/biden2.jpg",
        "tester",
    )
    assert decision(db, top) == "same"
    assert "moved Joe_Biden/biden2.jpg → Joseph_Biden/biden2.jpg" in toasts(at)
    # The store still lists biden2's other pairs until the daemon catches up: each says
    # where the file went, and its file buttons are off.
    assert "was moved to Joseph_Biden/biden2.jpg" in shown(at)
    stale = [p for p in unreviewed(db, 3) if p.a.path == "Joe_Biden/biden2.jpg"]
    assert stale and all(at.button(key=f"move-a-{p.lo}-{p.hi}").disabled for p in stale)

    at.button(key=f"flash-undo-{move.id}").click().run()
    assert not at.exception
    assert src.read_bytes() == content and not dst.exists()
    log = actions_log(db)
    assert [a.action for a in log] == ["undo", "move"]
    assert log[1].undone_at is not None and log[0].undo_of == move.id
    assert decision(db, top) is None
    assert (unreviewed(db)[0].lo, unreviewed(db)[0].hi) == (top.lo, top.hi)


def test_moves_never_overwrite_and_undo_refuses_a_taken_place(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    top = unreviewed(db)[0]
    src = root / "Joe_Biden" / "biden2.jpg"
    content = src.read_bytes()
    squatter = root / "Joseph_Biden" / "biden2.jpg"
    squatter.write_bytes(b"someone else's file")
    at = start(monkeypatch, root, db, "--allow-file-actions")
    at.button(key=f"move-a-{top.lo}-{top.hi}").click().run()
    assert squatter.read_bytes() == b"someone else's file"
    moved = root / "Joseph_Biden" / "biden2-2.jpg"
    assert moved.read_bytes() == content and not src.exists()

    src.write_bytes(b"a new file where the moved one was")
    goto(at, "File actions")
    (move,) = actions_log(db)
    at.button(key=f"undo-{move.id}").click().run()
    assert "[error] refused: cannot undo: Joe_Biden/biden2.jpg exists again" in shown(at)
    assert src.read_bytes() == b"a new file where the moved one was"
    assert moved.read_bytes() == content
    assert actions_log(db)[0].undoable


def test_remove_quarantines_and_the_scan_forgets_the_image(dev_copy_loose, monkeypatch, run_scan):
    root, db = dev_copy_loose
    top = unreviewed(db)[0]
    at = start(monkeypatch, root, db, "--allow-file-actions")
    at.button(key=f"remove-b-{top.lo}-{top.hi}").click().run()
    kept = root / "_quarantine" / "Joseph_Biden" / "Joseph_Biden_0004.jpg"
    assert kept.is_file() and not (root / top.b.path).exists()
    assert actions_log(db)[0].action == "quarantine"
    assert decision(db, top) == "removed"
    run_scan(root, db, threshold=LOOSE_THRESHOLD)
    with open_store(db, read_only=True, timeout=5) as con:
        assert image_rows.image_by_path(con, top.b.path) is None
        quarantined = "_quarantine/Joseph_Biden/Joseph_Biden_0004.jpg"
        assert image_rows.image_by_path(con, quarantined) is None
        assert pairs_page.count_pairs(con, PairFilter(state="all", class_search="joseph")) > 0


def test_read_only_mode_refuses_file_actions(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    top = unreviewed(db)[0]
    at = start(monkeypatch, root, db)
    assert not [k for k in button_keys(at) if k.startswith(("move-", "remove-"))]
    settings = parse_args(["--db", str(db), "--root", str(root)])
    assert not settings.allow_file_actions
    for attempt in (
        lambda: actions.relabel(settings, top, "a"),
        lambda: actions.quarantine(settings, top, "b"),
        lambda: actions.undo(settings, 1),
    ):
        with pytest.raises(FileActionRefused, match="--allow-file-actions"):
            attempt()
    assert (root / top.a.path).is_file() and (root / top.b.path).is_file()
    assert actions_log(db) == [] and decision(db, top) is None
    goto(at, "File actions")
    assert "[info] File actions are off" in shown(at)


# -- paths that leave the root -------------------------------------------------------------


def test_paths_outside_the_root_are_refused(dev_copy_loose, monkeypatch, tmp_path):
    root, db = dev_copy_loose
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.jpg"
    secret.write_bytes((root / "Amy" / "amy1.png").read_bytes())
    (root / "Amy" / "escape.png").symlink_to(secret)
    (root / "Linked").symlink_to(outside, target_is_directory=True)

    for bad, why in [
        ("../outside/secret.jpg", "contains '..'"),
        ("Amy/../../outside/secret.jpg", "contains '..'"),
        (str(secret), "absolute"),
        ("Amy/escape.png", "outside the data root"),
        ("Linked/secret.jpg", "outside the data root"),
    ]:
        with pytest.raises(UnsafePath, match=why):
            files.read_image_bytes(root, bad)
    with pytest.raises(UnsafePath):
        files.plan_relabel(root, "Amy/amy1.png", "Linked", ("0" * 32,), "_quarantine")
    with pytest.raises(FileActionRefused):
        files.plan_relabel(root, "Amy/amy1.png", "../outside", ("0" * 32,), "_quarantine")
    assert files.read_image_bytes(root, "Amy/amy1.png")[:4] == b"\x89PNG"

    # A store that names such paths (edited by hand, say) gets no image and no move.
    amy = root / "Amy" / "amy1.png"
    with open_store(db) as con:
        amy_id = con.execute("SELECT id FROM files WHERE path = 'Amy/amy1.png'").fetchone()[0]
        for i, path in enumerate(["../outside/secret.jpg", "Amy/escape.png"]):
            con.execute(
                """INSERT INTO files (id, path, class, size, mtime_ns, hash, first_seen,
                                     last_seen, dirty, candidates)
                   VALUES (?, ?, 'Amy', 1, 1, ?, now(), now(), false, 1)""",
                [100_000 + i, path, f"{i:032x}"],
            )
            con.execute(
                "INSERT INTO pair_rows VALUES (?, ?, 0.99, 0.99, now(), now())",
                [min(amy_id, 100_000 + i), max(amy_id, 100_000 + i)],
            )
    at = start(monkeypatch, root, db, "--allow-file-actions")
    errors = [as_read(e.value) for e in at.error]
    assert any("refused path '../outside/secret.jpg': contains '..'" in e for e in errors)
    assert any(
        "refused path 'Amy/escape.png'" in e and "outside the data root" in e for e in errors
    )
    assert "secret.jpg" not in captions(at) and "escape.png" not in captions(at)
    pair = next(p for p in unreviewed(db) if p.b.path == "Amy/escape.png")
    # Its buttons are off; called anyway, the action refuses and moves nothing.
    assert at.button(key=f"remove-b-{pair.lo}-{pair.hi}").disabled
    with pytest.raises(UnsafePath):
        actions.quarantine(parse_args(sys.argv[1:]), pair, "b")
    assert secret.is_file() and (root / "Amy" / "escape.png").is_symlink() and amy.is_file()
    assert actions_log(db) == []


# -- the store's lock ----------------------------------------------------------------------


def test_a_locked_store_shows_busy_and_loses_nothing(dev_copy_loose, monkeypatch):
    root, db = dev_copy_loose
    top = unreviewed(db)[0]
    # Busy is busy however long the wait: a short one (the waiting: test_store_lock.py).
    at = start(monkeypatch, root, db, *SHORT_LOCK_WAIT)
    with store_held_by_another_process(db):
        at.button(key=f"different-{top.lo}-{top.hi}").click().run()
        assert not at.exception
        (toast,) = toasts(at)
        assert "not done: the store is busy" in toast and "nothing was changed" in toast
        # The queue is still shown (not replaced by a database message).
        assert f"different-{top.lo}-{top.hi}" in button_keys(at)
        assert "lock" not in shown(at).lower()
    at.run()
    assert not at.exception and "store busy" not in shown(at)
    assert decision(db, top) is None
    assert f"different-{top.lo}-{top.hi}" in button_keys(at)


# -- names ---------------------------------------------------------------------------------


def test_japanese_names_display_intact(dev_copy_loose, monkeypatch, run_scan):
    root, db = dev_copy_loose
    (root / "Joseph_Biden").rename(root / "ジョー・バイデン")
    (root / "ジョー・バイデン" / "Joseph_Biden_0004.jpg").rename(
        root / "ジョー・バイデン" / "風間杜夫_0uGH.jpg.png_default, 1.jpg"
    )
    run_scan(root, db, threshold=LOOSE_THRESHOLD)
    at = start(monkeypatch, root, db)
    text = shown(at)
    assert "**ジョー・バイデン**" in text
    assert "q=%E3%82%B8%E3%83%A7%E3%83%BC%E3%83%BB%E3%83%90%E3%82%A4%E3%83%87%E3%83%B3" in text
    assert "風間杜夫_0uGH.jpg.png_default, 1.jpg" in captions(at)
    goto(at, "Person")
    at.text_input(key="person_search").set_value("バイデン").run()
    assert "## ジョー・バイデン" in shown(at)


# -- how the dashboard is started, and what it may import ----------------------------------


def test_launch_command_round_trips_into_dashboard_settings(tmp_path):
    from daemon.config import Settings
    from daemon.launch import dashboard_command

    s = Settings(
        root=tmp_path / "データ",
        db=tmp_path / "s.duckdb",
        port=8599,
        allow_file_actions=True,
        quarantine="trash",
    )
    cmd = dashboard_command(s)
    # What is served: app.py behind the Host check of dashboard/serve.py.
    assert cmd[:5] == [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(Path(APP).with_name("serve.py")),
    ]
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8599"
    got = parse_args(cmd[cmd.index("--") + 1 :])
    assert (got.root, got.db, got.status_file) == (s.root, s.db, s.status_path())
    assert got.allow_file_actions and got.quarantine == "trash"
    off = dashboard_command(Settings(db=tmp_path / "s.duckdb"))
    assert "--allow-file-actions" not in off
    assert not parse_args(off[off.index("--") + 1 :]).allow_file_actions


def test_dashboard_imports_no_daemon_code_and_keeps_no_connection():
    probe = (
        "import json, sys, dashboard.app, dashboard.actions\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'daemon')))"
    )
    daemon_modules = json.loads(
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout
    )
    # Only the shared, light parts: daemon/common/ and daemon/config.py.
    shared = ("daemon", "daemon.config")
    internals = [
        m for m in daemon_modules if m not in shared and m.split(".")[:2] != ["daemon", "common"]
    ]
    assert internals == []
    launch_only = subprocess.run(
        [sys.executable, "-c", "import sys, daemon.launch; print('streamlit' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout.strip()
    assert launch_only == "False"
    for source in (REPO / "dashboard").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for forbidden in ("cache_resource", "st.connection", "duckdb.connect", "con.execute"):
            assert forbidden not in text, f"{source.name} uses {forbidden}"


def test_facelint_dashboard_serves_on_localhost_and_stops_with_it(scanned_dev_loose, tmp_path):
    import signal
    import socket
    import urllib.request

    root, db = scanned_dev_loose
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    health = f"http://127.0.0.1:{port}/_stcore/health"
    # The installed console script, beside the interpreter: it need not be on PATH.
    script = Path(sys.executable).with_name("facelint")
    proc = subprocess.Popen(
        [str(script), "dashboard", "--db", str(db), "--root", str(root), "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(health, timeout=2) as answer:
                    assert answer.read() == b"ok"
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Streamlit went with it: nothing answers any more.
    with pytest.raises(OSError):
        urllib.request.urlopen(health, timeout=2)


def test_problems_page_shows_unreadable_files_and_hubs(dev_copy, monkeypatch, run_scan):
    root, db = dev_copy
    (root / "Amy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    run_scan(root, db)
    with open_store(db) as con:
        # One kept pair per image makes every image with two candidates a hub.
        meta.set_meta(con, max_pairs_per_image=1)
    at = goto(start(monkeypatch, root, db), "Problems")
    text = shown(at)
    assert "Amy** / broken.png" in text and "unreadable: " in text
    assert "[warning] Amy/broken.png: cannot show this image" in text
    assert "matches 5 images above the threshold" in text  # biden2.jpg
    at.multiselect(key="problem_statuses").set_value(["unreadable"]).run()
    assert "1 images" in shown(at) and "no_face" not in shown(at)
