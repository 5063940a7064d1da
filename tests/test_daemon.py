"""The daemon for real: a subprocess, inotify on a temp tree, a DuckDB file, a notify socket."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
def tree(tmp_path: Path) -> tuple[Path, Path]:
    root = copy_dev_faces(tmp_path / "data", [*SMALL, "Joseph_Biden"])
    return root, tmp_path / "facelint.duckdb"


def test_ready_copy_move_delete_and_sigterm(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        # READY comes after the initial reconcile: everything is already in the store.
        assert store_paths(db) == disk_paths(root)
        assert any(m.startswith("STATUS=") for m in d.messages)
        base = encoded_total(db)
        assert base == 20
        (root / "Joe_Biden").mkdir()
        slow_copy(DEV_FACES / "Joe_Biden" / "biden.jpg", root / "Joe_Biden" / "biden.jpg")
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


def test_burst_of_200_files_has_no_duplicates(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    db = tmp_path / "facelint.duckdb"
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        sources = sorted(p for p in DEV_FACES.rglob("*") if p.suffix in (".png", ".jpg"))
        made = 0
        while made < 200:
            src = sources[made % len(sources)]
            folder = root / f"burst_{made % 7}"
            folder.mkdir(exist_ok=True)
            shutil.copyfile(src, folder / f"{made:03d}_{src.name}")
            made += 1
        wait_for(lambda: len(store_paths(db)) == 200, 180, "200 files in the store")
        d.wait_idle(180)
        rows = query_when_free(db, "SELECT count(*), count(DISTINCT path) FROM files")
        assert rows == [(200, 200)]
        distinct = query_when_free(db, "SELECT count(DISTINCT hash) FROM files")[0][0]
        assert encoded_total(db) == distinct  # each content encoded once
        dup = query_when_free(db, "SELECT count(*) - count(DISTINCT (lo, hi)) FROM pair_rows")
        assert dup == [(0,)]
        assert query_when_free(db, "SELECT count(*) FROM pairs WHERE class_a = class_b") == [(0,)]
        assert d.terminate() == 0
    finally:
        d.close()


def test_reconcile_catches_what_the_watcher_never_saw(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        assert d.terminate() == 0
    finally:
        d.close()
    # Created while the daemon is stopped.
    shutil.copy2(DEV_FACES / "Joe_Biden" / "biden2.jpg", root / "Raj" / "biden2.jpg")
    d = DaemonProcess(root, db, tmp_path, env={"FACELINT_RECONCILE_MINUTES": "0.05"})
    try:
        d.wait_ready()
        assert "Raj/biden2.jpg" in store_paths(db)
        d.wait_idle()
        # A change the store never heard of (as after an inotify queue overflow): the
        # periodic reconcile (every 3 s here) repairs it.
        gone = "Penny/penny2.png"
        wait_for(lambda: query(db, "SELECT 1") is not None, 30, "the store")
        import duckdb

        con = duckdb.connect(str(db))
        try:
            con.execute("DELETE FROM files WHERE path = ?", [gone])
        finally:
            con.close()
        wait_for(lambda: gone in store_paths(db), 60, "the periodic reconcile")
        wait_for(
            lambda: (
                query_when_free(db, "SELECT count(*) FROM runs WHERE kind = 'reconcile'")[0][0] >= 3
            ),
            30,
            "the reconcile to be recorded",
        )
        assert d.terminate() == 0
    finally:
        d.close()


def test_hot_cpu_pauses_encoding_until_it_cools(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    db = tmp_path / "facelint.duckdb"
    sensor = tmp_path / "temp"
    sensor.write_text("50000\n")
    d = DaemonProcess(
        root,
        db,
        tmp_path,
        env={"FACELINT_TEMP_SENSOR": str(sensor), "FACELINT_TEMP_CHECK_SECONDS": "0.3"},
    )
    try:
        d.wait_ready()
        sensor.write_text("80000\n")  # 80 °C, above the 72 °C limit
        copy_dev_faces(root, ["Amy"])
        wait_for(lambda: d.status().get("state") == "throttled", 30, "state throttled")
        assert d.status()["throttled"] is True
        assert d.status()["temperature"] == 80.0
        time.sleep(1.5)
        assert d.status()["state"] == "throttled"
        sensor.write_text("70000\n")  # between the marks: still paused (hysteresis)
        time.sleep(1.5)
        assert d.status()["state"] == "throttled"
        assert query(db, "SELECT count(*) FROM embeddings") in (None, [(0,)])
        sensor.write_text("60000\n")  # below the 65 °C resume mark
        wait_for(lambda: encoded_total(db) == 5, 60, "encoding to resume")
        d.wait_idle()
        assert d.status()["throttled"] is False
        assert "above 72" in d.log() and "resuming" in d.log()
        assert d.terminate() == 0
    finally:
        d.close()


def test_waits_out_a_store_held_by_another_process(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]);"
                " print('held', flush=True); time.sleep(10); c.close()",
                str(db),
            ],
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
        holder.wait(timeout=30)
        wait_for(
            lambda: {"Joe_Biden/biden.jpg", "Joe_Biden/biden2.jpg"} <= store_paths(db),
            90,
            "the daemon to catch up",
        )
        d.wait_idle()
        assert store_paths(db) == disk_paths(root)
        assert pairs_of(db, "Joe_Biden/biden2.jpg")
        assert d.terminate() == 0
    finally:
        d.close()


def test_kill_9_during_a_batch_then_restart_is_consistent(tmp_path, run_scan):
    root = tmp_path / "data"
    root.mkdir()
    db = tmp_path / "facelint.duckdb"
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
    fresh = tmp_path / "fresh.duckdb"
    run_scan(root, fresh)
    sql = "SELECT path_a, path_b FROM pairs ORDER BY 1, 2"
    assert query(db, sql) == query(fresh, sql)
    assert query(db, "SELECT count(*) - count(DISTINCT (lo, hi)) FROM pair_rows") == [(0,)]


def test_renaming_and_deleting_a_class_folder(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path)
    try:
        d.wait_ready()
        d.wait_idle()
        base = encoded_total(db)
        ids = dict(query_when_free(db, "SELECT path, id FROM files WHERE class = 'Raj'"))
        # Renaming a folder relabels its images: same identities, nothing re-encoded.
        (root / "Raj").rename(root / "Raj Koothrappali")
        wait_for(
            lambda: not any(p.startswith("Raj/") for p in store_paths(db)), 60, "the folder rename"
        )
        d.wait_idle()
        after = dict(
            query_when_free(db, "SELECT path, id FROM files WHERE class = 'Raj Koothrappali'")
        )
        assert sorted(after.values()) == sorted(ids.values())
        assert encoded_total(db) == base
        assert store_paths(db) == disk_paths(root)
        # Deleting a folder removes its images and their pairs.
        shutil.rmtree(root / "Raj Koothrappali")
        wait_for(
            lambda: not any(p.startswith("Raj ") for p in store_paths(db)), 60, "the folder delete"
        )
        d.wait_idle()
        assert query_when_free(
            db, "SELECT count(*) FROM pairs WHERE class_a LIKE 'Raj%' OR class_b LIKE 'Raj%'"
        ) == [(0,)]
        assert d.terminate() == 0
    finally:
        d.close()


def test_polling_observer_for_network_mounts(tree, tmp_path):
    root, db = tree
    d = DaemonProcess(root, db, tmp_path, command=["daemon", str(root), "--db", str(db), "--poll"])
    try:
        d.wait_ready()
        assert "PollingObserver" in d.log()
        shutil.copy2(DEV_FACES / "Joe_Biden" / "biden2.jpg", root / "Amy" / "biden2.jpg")
        wait_for(lambda: pairs_of(db, "Amy/biden2.jpg"), 60, "pairs via the polling observer")
        assert d.terminate() == 0
    finally:
        d.close()
