"""The daemon under hostile input, for real: bad names, symlinks, a deleted store, a second
daemon, an empty root. Real subprocesses, inotify (or polling), DuckDB files, notify socket."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DEV_FACES, REPO, copy_dev_faces
from tests.daemon_harness import DaemonProcess, query, query_when_free, wait_for

pytestmark = pytest.mark.slow

SMALL = ["Amy", "Penny", "Raj"]


def store_paths(db: Path) -> set[str]:
    return {r[0] for r in query_when_free(db, "SELECT path, 1 FROM files")}


def real_files(root: Path) -> set[str]:
    """Regular files reached without following any link: what must be stored."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            full = Path(dirpath) / name
            if not full.is_symlink():
                out.add(full.relative_to(root).as_posix())
    return out


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = copy_dev_faces(tmp_path / "data", SMALL)
    return root, tmp_path / "facelint.duckdb"


def test_non_utf8_name_is_skipped_and_never_blocks_others(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        bad = os.fsencode(root / "Penny") + b"/bad\xffname.jpg"
        with open(bad, "wb") as fh:
            fh.write((DEV_FACES / "Penny" / "penny1.png").read_bytes())
        time.sleep(1.5)  # its batch first, alone
        shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
        wait_for(lambda: "Amy/leonard1.png" in store_paths(db), 60, "the valid file stored")
        d.wait_idle()
        assert d.status().get("state") == "idle"
        assert store_paths(db) == real_files(root) - {os.fsdecode(bad)[len(str(root)) + 1 :]}
        log = d.log_path.read_bytes().decode("utf-8")  # the log is valid UTF-8 too
        assert "skipped Penny/bad\\xffname.jpg: file name is not valid UTF-8" in log
        assert "Traceback" not in log
        assert d.terminate() == 0
    finally:
        d.close()


def test_symlinked_folders_and_files_are_not_followed(tree, tmp_path):
    root, db = tree
    elsewhere = copy_dev_faces(tmp_path / "elsewhere", ["Howard"])
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        # The attack: move a class folder away and put a link to outside in its place,
        # at once, so the folder's batch finds the link.
        (root / "Raj").rename(root / "Raj_moved")
        os.symlink(elsewhere / "Howard", root / "Raj")
        os.symlink(elsewhere / "Howard" / "howard1.png", root / "Amy" / "howard1.png")
        wait_for(lambda: any(p.startswith("Raj_moved/") for p in store_paths(db)), 60, "the move")
        d.wait_idle()
        assert store_paths(db) == real_files(root)
        assert not any(p.startswith("Raj/") for p in store_paths(db))
        log = d.log()
        assert "skipped Raj: folder is a symbolic link: not followed" in log
        assert "skipped Amy/howard1.png: symbolic link: not followed" in log
        assert d.terminate() == 0
    finally:
        d.close()


def test_polling_observer_does_not_follow_a_linked_folder(tree, tmp_path):
    root, db = tree
    elsewhere = copy_dev_faces(tmp_path / "elsewhere", ["Howard"])
    d = DaemonProcess(root, db, tmp_path, command=["daemon", str(root), "--db", str(db), "--poll"])
    try:
        d.wait_ready()
        d.wait_idle()
        # A link to a folder inside the root would pair every image with itself (1.0); one
        # to outside would bring in foreign files. The polling snapshot lists both.
        os.symlink(root / "Penny", root / "Penny2")
        os.symlink(elsewhere / "Howard", root / "Outside")
        shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
        wait_for(lambda: "Amy/leonard1.png" in store_paths(db), 60, "a polled change")
        time.sleep(3)  # another poll or two
        d.wait_idle()
        assert store_paths(db) == real_files(root)
        assert query_when_free(db, "SELECT count(*) FROM pairs WHERE score > 0.99") == [(0,)]
        assert d.terminate() == 0
    finally:
        d.close()


def _record_decision(db: Path) -> None:
    from store.connection import open_store
    from store.decisions import record_decision

    with open_store(db, timeout=30) as con:
        a, b = con.execute("SELECT min(hash), max(hash) FROM files").fetchone()
        record_decision(con, a, b, "different", "tester")


def test_deleted_store_is_detected_said_and_rebuilt(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        before = store_paths(db)
        _record_decision(db)
        backup = tmp_path / "decisions.csv"
        export = [sys.executable, "-m", "daemon.cli", "export", "--db", str(db)]
        subprocess.run([*export, "--decisions", str(backup)], check=True, cwd=REPO)
        db.unlink()
        for extra in db.parent.glob(db.name + ".wal"):
            extra.unlink()
        # Said loudly: status file, systemd STATUS, log.
        wait_for(lambda: "STORE LOST" in d.status().get("alert", ""), 30, "the status alert")
        wait_for(
            lambda: any(m.startswith("STATUS=") and "STORE LOST" in m for m in d.messages),
            30,
            "STATUS=... STORE LOST",
        )
        wait_for(lambda: "Rebuilt from the files" in d.status().get("alert", ""), 90, "rebuild")
        d.wait_idle()
        alert = d.status()["alert"]
        assert "was deleted" in alert and "decisions cannot be rebuilt" in alert
        assert "STORE LOST" in d.log() and "Rebuilt from the files" in d.log()
        assert store_paths(db) == before == real_files(root)
        # Rebuilt what the files allow: every file encoded again (three people: no pairs).
        assert query_when_free(db, "SELECT count(*) FROM faces")[0][0] >= len(before)
        assert query_when_free(db, "SELECT count(*) FROM decisions") == [(0,)]
        # Ordinary work goes on in the rebuilt store.
        shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
        wait_for(lambda: "Amy/leonard1.png" in store_paths(db), 60, "a file after the rebuild")
        d.wait_idle()
        assert d.terminate() == 0
    finally:
        d.close()
    # The backup restores the decision into the rebuilt store, by the README's command.
    with backup.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["decision"] for r in rows] == ["different"]
    restore = next(
        line
        for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("facelint sql --write") and "decisions.csv" in line
    )
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", *shlex.split(restore)[1:], "--db", str(db)],
        check=True,
        cwd=tmp_path,  # where decisions.csv is
        env=dict(os.environ, FACELINT_CONFIG=str(tmp_path / "none"), PYTHONPATH=str(REPO)),
    )
    assert query(db, "SELECT decision, decided_by FROM decisions") == [("different", "tester")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_daemon_per_store_and_the_lock_survives_no_kill_9(tree, tmp_path):
    root, db = tree
    env = dict(os.environ, FACELINT_CONFIG=str(tmp_path / "none"), PYTHONPATH=str(REPO))
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        for command in (["daemon"], ["up", "--port", str(_free_port())]):
            second = subprocess.run(
                [sys.executable, "-m", "daemon.cli", *command, str(root), "--db", str(db)],
                capture_output=True,
                text=True,
                env=env,
                cwd=tmp_path,
                timeout=60,
                check=False,
            )
            assert second.returncode == 5, second.stderr
            assert f"another facelint daemon (pid {d.proc.pid}) already keeps the store" in (
                second.stderr
            )
        assert d.proc.poll() is None  # the first one is untouched
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(timeout=30)
    finally:
        d.close()
    # The kernel released the lock with the killed process: a new daemon starts.
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        assert d.terminate() == 0
    finally:
        d.close()


def test_empty_root_at_start_removes_nothing_but_ordinary_deletes_stay(tree, tmp_path, run_scan):
    root, db = tree
    run_scan(root, db)
    before = store_paths(db)
    away = tmp_path / "away"
    root.rename(away)
    root.mkdir()  # an unmounted disk, or the wrong folder: empty
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        wait_for(lambda: "holds no image" in d.status().get("message", ""), 30, "the message")
        assert store_paths(db) == before
        # Files that appear are stored, and deleting one is an ordinary delete.
        (root / "Amy").mkdir()
        shutil.copy2(DEV_FACES / "Amy" / "amy1.png", root / "Amy" / "new.png")
        wait_for(lambda: "Amy/new.png" in store_paths(db), 60, "a new file stored")
        d.wait_idle()
        (root / "Amy" / "new.png").unlink()
        wait_for(lambda: "Amy/new.png" not in store_paths(db), 60, "the delete")
        d.wait_idle()
        assert store_paths(db) == before
        assert d.terminate() == 0
    finally:
        d.close()
    # Said on purpose, an empty root empties the store.
    shutil.rmtree(root / "Amy")
    d = DaemonProcess(
        root, db, tmp_path, command=["daemon", str(root), "--db", str(db), "--allow-empty"]
    )
    try:
        d.wait_ready()
        d.wait_idle()
        assert store_paths(db) == set()
        assert d.terminate() == 0
    finally:
        d.close()
    assert query(db, "SELECT count(*) FROM files") == [(0,)]
