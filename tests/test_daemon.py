"""The daemon end to end, as systemd runs it: a subprocess, inotify on a temp tree, a
DuckDB file, a notify socket. Only what a real process shows is here (READY, SIGTERM,
kill -9, another process holding the store); the daemon's behaviours are tested through
its steps, in-process, in tests/test_service_steps.py."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from store.connection import open_store
from tests.conftest import DEV_FACES, copy_dev_faces
from tests.daemon_harness import DaemonProcess, query, query_when_free, wait_for

pytestmark = pytest.mark.slow

SMALL = ["Amy", "Penny", "Raj"]


def encoded_total(db: Path) -> int:
    rows = query_when_free(
        db, "SELECT coalesce(max(value), 0) FROM counters WHERE name = 'encoded_total'"
    )
    return int(rows[0][0])


def pairs_of(db: Path, path: str) -> list[tuple[str, str]]:
    rows = query_when_free(
        db, "SELECT path_a, path_b, 1 FROM pairs WHERE path_a = ? OR path_b = ?", [path, path]
    )
    return sorted((a, b) for a, b, _ in rows)


def store_paths(db: Path) -> set[str]:
    return {r[0] for r in query_when_free(db, "SELECT path, 1 FROM files")}


def disk_paths(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def slow_copy(src: Path, dest: Path, chunks: int = 4, pause: float = 0.3) -> None:
    data = src.read_bytes()
    step = len(data) // chunks + 1
    with dest.open("wb") as fh:
        for i in range(0, len(data), step):
            fh.write(data[i : i + step])
            fh.flush()
            time.sleep(pause)


@pytest.fixture
def tree(tmp_path: Path, seed_encodings) -> tuple[Path, Path]:
    """Three people and Joseph Biden, in a store that already holds every dev face's
    encoding: the daemon's start encodes nothing, for the tests about what comes after it."""
    root = copy_dev_faces(tmp_path / "data", [*SMALL, "Joseph_Biden"])
    return root, seed_encodings(tmp_path / "facelint.duckdb")


def test_ready_copy_move_delete_and_sigterm(tree, tmp_path):
    root, db = tree
    known = encoded_total(db)
    # A photo no store has seen (Biden's, mirrored): the one encode of this test.
    photo = tmp_path / "biden.jpg"
    with Image.open(DEV_FACES / "Joe_Biden" / "biden.jpg") as im:
        ImageOps.mirror(im.convert("RGB")).save(photo, quality=95)
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        # READY comes after the initial reconcile: everything is already in the store.
        assert store_paths(db) == disk_paths(root)
        assert any(m.startswith("STATUS=") for m in d.messages)
        base = encoded_total(db)
        assert base == known  # every image's content was known: nothing encoded
        (root / "Joe_Biden").mkdir()
        slow_copy(photo, root / "Joe_Biden" / "biden.jpg")
        wait_for(lambda: pairs_of(db, "Joe_Biden/biden.jpg"), 60, "pairs of the copied file")
        assert encoded_total(db) == base + 1
        assert all("Joseph_Biden/" in a + b for a, b in pairs_of(db, "Joe_Biden/biden.jpg"))
        # A move between folders: a relabel, not a new image.
        shutil.move(root / "Joe_Biden" / "biden.jpg", root / "Amy" / "biden.jpg")
        wait_for(lambda: pairs_of(db, "Amy/biden.jpg"), 60, "pairs after the move")
        assert pairs_of(db, "Joe_Biden/biden.jpg") == []
        assert encoded_total(db) == base + 1
        # Delete: its pairs go.
        (root / "Amy" / "biden.jpg").unlink()
        wait_for(lambda: "Amy/biden.jpg" not in store_paths(db), 60, "the delete")
        assert pairs_of(db, "Amy/biden.jpg") == []
        d.wait_idle()
        assert "WATCHDOG=1" in d.messages
        assert d.terminate() == 0
        assert "STOPPING=1" in d.messages
    finally:
        d.close()
    assert store_paths(db) == disk_paths(root)
    assert d.status()["state"] == "stopped"


def test_waits_out_a_store_held_by_another_process_then_sighup_stops_it_cleanly(tree, tmp_path):
    """A store another process holds is waited out; then SIGHUP (a closed terminal) is a
    clean stop like SIGTERM: exit 0 after the cleanup, not killed by the signal."""
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys; c = duckdb.connect(sys.argv[1]);"
                " print('held', flush=True); sys.stdin.readline(); c.close()",
                str(db),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        (root / "Joe_Biden").mkdir()
        for name in ("biden.jpg", "biden2.jpg"):
            shutil.copy2(DEV_FACES / "Joe_Biden" / name, root / "Joe_Biden" / name)
        wait_for(
            lambda: d.status().get("state") == "waiting for store", 15, "state 'waiting for store'"
        )
        assert holder.stdin is not None
        holder.stdin.write("release\n")  # the lock goes once the daemon was seen waiting
        holder.stdin.close()
        holder.wait(timeout=30)
        wait_for(
            lambda: {"Joe_Biden/biden.jpg", "Joe_Biden/biden2.jpg"} <= store_paths(db),
            90,
            "the daemon to catch up",
        )
        d.wait_idle()
        assert store_paths(db) == disk_paths(root)
        assert pairs_of(db, "Joe_Biden/biden2.jpg")
        d.proc.send_signal(signal.SIGHUP)
        # The store closed, the status says stopped, systemd was told.
        assert d.proc.wait(timeout=60) == 0
    finally:
        d.close()
    assert "stop requested (SIGHUP): finishing the current step" in d.log()
    assert "STOPPING=1" in d.messages
    assert d.status()["state"] == "stopped"
    assert store_paths(db) == disk_paths(root)


def test_kill_9_during_a_batch_then_restart_is_consistent(
    tmp_path, run_scan, seed_encodings, seed_encodings_only, scanned_dev
):
    root = tmp_path / "data"
    root.mkdir()
    db = seed_encodings_only(tmp_path / "facelint.duckdb")
    # Two folders' encodings taken out again: the batch stores, compares and writes all
    # six folders' files and still encodes (the kill lands in that), but not all 30
    # images twice over (each dlib encode is CPU the suite's other worker wants).
    with open_store(db, timeout=30) as con:
        con.execute("ATTACH ? AS dev (READ_ONLY)", [str(scanned_dev[1])])
        for table in ("faces", "embeddings"):
            con.execute(
                f"DELETE FROM {table} WHERE hash IN "
                "(SELECT hash FROM dev.files WHERE class IN ('Joseph_Biden', 'Howard'))"
            )
        con.execute("DETACH dev")
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        copy_dev_faces(root, [*SMALL, "Joseph_Biden", "Leonard", "Howard"])
        wait_for(lambda: d.status().get("state") in ("encoding", "comparing"), 30, "a batch")
        time.sleep(0.8)
        d.kill()
    finally:
        d.close()
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        assert d.terminate() == 0
    finally:
        d.close()
    assert store_paths(db) == disk_paths(root)
    assert query(db, "SELECT count(*) FROM files WHERE dirty") == [(0,)]
    # The same tree scanned from scratch gives the same pairs: none lost, none doubled.
    # (Its encodings come from the session's store: the same images encode the same.)
    fresh = seed_encodings(tmp_path / "fresh.duckdb")
    run_scan(root, fresh)
    sql = "SELECT path_a, path_b FROM pairs ORDER BY 1, 2"
    assert query(db, sql) == query(fresh, sql)
    assert query(db, "SELECT count(*) - count(DISTINCT (lo, hi)) FROM pair_rows") == [(0,)]
