"""No typo wipes a store, and no poisoned batch wedges the daemon's queue."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from daemon.cli import main
from daemon.watcher import EventQueue
from tests.conftest import DEV_FACES


def count_files(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM files").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELINT_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("FACELINT_ROOT", raising=False)


@pytest.fixture
def small_store(tmp_path, run_scan, seed_encodings) -> tuple[Path, Path]:
    root = tmp_path / "data"
    shutil.copytree(DEV_FACES / "Amy", root / "Amy")
    shutil.copytree(DEV_FACES / "Penny", root / "Penny")
    db = seed_encodings(tmp_path / "s.duckdb")
    run_scan(root, db)
    assert count_files(db) == 10
    return root, db


def test_scan_of_a_root_that_does_not_exist_is_an_error(small_store, tmp_path, capsys, no_config):
    _, db = small_store
    typo = tmp_path / "dta"
    assert main(["scan", str(typo), "--db", str(db)]) == 2
    assert not typo.exists()
    assert f"data folder {typo} does not exist" in capsys.readouterr().err
    assert count_files(db) == 10  # the store is untouched
    assert main(["daemon", str(typo), "--db", str(db)]) == 2
    assert main(["up", str(typo), "--db", str(db)]) == 2
    assert not typo.exists()


def test_the_default_root_is_created(tmp_path, monkeypatch, no_config):
    monkeypatch.chdir(tmp_path)
    assert main(["scan", "--db", str(tmp_path / "s.duckdb")]) == 0
    assert (tmp_path / "data").is_dir()


def test_scan_of_an_empty_root_removes_nothing_unless_allowed(small_store, capsys, no_config):
    root, db = small_store
    for folder in ("Amy", "Penny"):
        shutil.rmtree(root / folder)
    assert main(["scan", str(root), "--db", str(db)]) == 6
    err = capsys.readouterr().err
    assert "holds no image but the store holds 10" in err and "--allow-empty" in err
    assert count_files(db) == 10
    assert main(["scan", str(root), "--db", str(db), "--allow-empty"]) == 0
    assert count_files(db) == 0


def test_a_poisoned_path_is_isolated_and_dropped_the_rest_goes_through():
    now = [0.0]
    queue = EventQueue(Path("/nonexistent"), quiet=0.5, clock=lambda: now[0])
    paths = [f"A/{i}.png" for i in range(64)]
    for p in paths:
        queue.touch(p, ready_now=True)
    stored: set[str] = set()
    dropped: list[str] = []
    runs = 0
    while len(queue):
        now[0] += 1.0
        batch = queue.pop_ready(256)
        assert len(batch), "ready entries must leave"
        runs += 1
        assert runs < 40, "the queue keeps retrying"
        if "A/13.png" in batch.paths:  # the pipeline fails on every batch holding it
            dropped += queue.requeue(batch)
        else:
            queue.done(batch)
            stored.update(batch.paths)
    assert dropped == ["A/13.png"]
    assert stored == set(paths) - {"A/13.png"}
    # 3 tries of the whole batch, one per half on the way down, 3 alone: about 3 + 2·6 + 3.
    assert runs <= 20


def test_a_busy_store_never_counts_towards_giving_up():
    now = [0.0]
    queue = EventQueue(Path("/nonexistent"), quiet=0.5, clock=lambda: now[0])
    queue.touch("A/1.png", ready_now=True)
    for _ in range(10):
        now[0] += 1.0
        batch = queue.pop_ready(10)
        assert batch.paths == ["A/1.png"]
        assert queue.requeue(batch, counted=False) == []
    assert len(queue) == 1


def test_scan_skips_symlinks_with_a_reason(tmp_path, capsys, no_config, seed_encodings):
    root = tmp_path / "data"
    shutil.copytree(DEV_FACES / "Amy", root / "Amy")
    outside = tmp_path / "outside"
    shutil.copytree(DEV_FACES / "Penny", outside)
    (root / "Penny").symlink_to(outside)
    (root / "Amy" / "p.png").symlink_to(outside / "penny1.png")
    db = seed_encodings(tmp_path / "s.duckdb")
    assert main(["scan", str(root), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "skipped: Penny: folder is a symbolic link: not followed" in out
    assert "skipped: Amy/p.png: symbolic link: not followed" in out
    assert count_files(tmp_path / "s.duckdb") == 5


def test_store_guard_refuses_a_deleted_or_replaced_store(tmp_path):
    from store.connection import StoreGuard, StoreLost, open_store

    db = tmp_path / "s.duckdb"
    guard = StoreGuard()
    with open_store(db, guard=guard) as con:
        con.execute("INSERT INTO meta VALUES ('mine', '1')")
    with open_store(db, guard=guard):
        pass  # the same file: fine
    db.unlink()
    with pytest.raises(StoreLost, match="was deleted"), open_store(db, guard=guard):
        pass
    assert not db.exists()  # nothing was created in its place
    # Another store at the same path (the inode may well be the deleted one's).
    duckdb.connect(str(db)).close()
    with pytest.raises(StoreLost, match="replaced"), open_store(db, guard=guard):
        pass
    guard.reset()  # the rebuild accepts the new file
    with open_store(db, guard=guard) as con:
        assert con.execute("SELECT count(*) FROM meta WHERE key = 'mine'").fetchone() == (0,)
    with open_store(db, guard=guard):
        pass
