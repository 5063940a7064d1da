"""The daemon under hostile input, for real: bad names, symlinks, a deleted store, a second
daemon, an empty root. Real subprocesses, inotify (or polling), DuckDB files, notify socket."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DEV_FACES, REPO, copy_dev_faces, real_files
from tests.daemon_harness import DaemonProcess, query, query_when_free, wait_for

pytestmark = pytest.mark.slow

SMALL = ["Amy", "Penny", "Raj"]


def store_paths(db: Path) -> set[str]:
    return {r[0] for r in query_when_free(db, "SELECT path, 1 FROM files")}


@pytest.fixture
def tree(tmp_path: Path, seed_encodings) -> tuple[Path, Path]:
    """Three people, in a store that already holds every dev face's encoding: the
    daemon's start encodes nothing (what these tests watch comes after it)."""
    root = copy_dev_faces(tmp_path / "data", SMALL)
    return root, seed_encodings(tmp_path / "facelint.duckdb")


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
        backup = tmp_path / "review-backup.json"
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
    doc = json.loads(backup.read_text(encoding="utf-8"))
    assert [r["decision"] for r in doc["pair_decisions"]] == ["different"]
    restore = next(
        line
        for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("facelint import --decisions") and backup.name in line
    )
    command = shlex.split(restore, comments=True)[1:]
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", *command, "--db", str(db)],
        check=True,
        cwd=tmp_path,  # where the backup is
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
        # The same store by other names: a symbolic link, a hard link in another folder.
        link = tmp_path / "link.duckdb"
        link.symlink_to(db)
        (tmp_path / "other").mkdir()
        hard = tmp_path / "other" / "hard.duckdb"
        os.link(db, hard)
        for command, name in (
            (["daemon"], db),
            (["up", "--port", str(_free_port())], db),
            (["daemon"], link),
            (["daemon"], hard),
        ):
            second = subprocess.run(
                [sys.executable, "-m", "daemon.cli", *command, str(root), "--db", str(name)],
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
