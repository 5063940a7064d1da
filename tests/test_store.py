"""The Store object: read-only reads, one transaction per write, its facts."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from daemon.cli import main
from store import meta
from store.connection import (
    StoreBusy,
    StoreGuard,
    StoreLost,
    StoreMissing,
    lock_holders,
    open_store,
)
from store.db import Store
from tests.conftest import store_held_by_another_process


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_reading_a_missing_store_raises_and_creates_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "sub" / "facelint.duckdb", lock_timeout=1)
    with pytest.raises(StoreMissing), store.reading():
        pass
    with pytest.raises(StoreMissing):
        store.model()
    assert not store.exists()
    assert not (tmp_path / "sub").exists()


def test_writing_commits_and_reading_is_read_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "facelint.duckdb", lock_timeout=1)
    with store.writing() as con:
        meta.set_meta(con, model="dlib:test", compare_params="threshold=0.35;k=20")
        meta.bump_counter(con, "generation", 2)
    assert store.exists()
    assert store.model() == "dlib:test"
    assert store.threshold() == 0.35
    assert store.generation() == 2
    assert store.counter("encoded_total") == 0
    assert store.meta("compare_params") == "threshold=0.35;k=20"
    assert store.meta("no such key") is None
    with store.reading() as con, pytest.raises(duckdb.InvalidInputException, match="read-only"):
        meta.set_meta(con, model="other")
    # Two readers side by side: neither takes a lock the other waits for.
    with store.reading() as one, store.reading() as two:
        assert meta.model(one) == meta.model(two) == "dlib:test"


def test_a_write_that_raises_writes_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "facelint.duckdb", lock_timeout=1)
    store.write(lambda con: meta.set_meta(con, model="first"))
    with pytest.raises(RuntimeError, match="boom"), store.writing() as con:
        meta.set_meta(con, model="second")
        raise RuntimeError("boom")
    assert store.model() == "first"
    assert store.read(meta.model) == "first"


def test_facts_of_a_store_never_compared(tmp_path: Path) -> None:
    store = Store(tmp_path / "facelint.duckdb", lock_timeout=1)
    store.write(lambda con: None)
    assert store.model() is None
    assert store.threshold() is None
    assert store.generation() == 0


def test_a_read_waits_for_the_writer_then_gives_up(tmp_path: Path) -> None:
    """DuckDB refuses a read-only connection beside a read-write one to the same file (in
    one process as between two): the read retries with backoff until its deadline, on the
    injected clock, telling on_wait each time."""
    clock = FakeClock()
    waits: list[float] = []
    store = Store(
        tmp_path / "facelint.duckdb",
        lock_timeout=3.0,
        on_wait=lambda waited, _message: waits.append(waited),
        clock=clock,
        sleep=clock.sleep,
    )
    store.write(lambda con: None)
    with store.writing(), pytest.raises(StoreBusy, match="stayed locked"), store.reading():
        pass
    assert clock.now == pytest.approx(3.0)
    assert waits and waits == sorted(waits) and waits[0] == 0.0
    assert len(clock.slept) == len(waits) > 2


def test_the_guard_refuses_reads_and_writes_of_a_replaced_store(tmp_path: Path) -> None:
    db = tmp_path / "facelint.duckdb"
    store = Store(db, lock_timeout=1, guard=StoreGuard())
    store.write(lambda con: meta.set_meta(con, model="mine"))
    assert store.model() == "mine"
    # Moved away, not deleted: a deleted file's inode may be reused by the next one, which
    # only a write open tells apart (by the store_id inside), not a read.
    db.rename(tmp_path / "moved.duckdb")
    other = Store(db, lock_timeout=1)
    other.write(lambda con: meta.set_meta(con, model="someone else's"))
    # The daemon learns at its next read, not only at its next write, and reads nothing
    # of the other file meanwhile.
    with pytest.raises(StoreLost):
        store.model()
    with pytest.raises(StoreLost), store.writing():
        pass
    assert other.model() == "someone else's"


def test_an_open_lets_go_of_the_file_when_its_last_user_in_the_process_is_done(
    tmp_path: Path,
) -> None:
    """Every open attaches the file to the process's one DuckDB (store/connection.py):
    readers here share it, a write here waits for them as for another process's lock,
    and once the last of them is done another process takes the write lock at once."""
    db = tmp_path / "facelint.duckdb"
    clock = FakeClock()
    store = Store(db, lock_timeout=1.0, clock=clock, sleep=clock.sleep)
    store.write(lambda con: meta.set_meta(con, model="m"))
    with store.reading() as one:
        with store.reading() as two:
            assert meta.model(one) == meta.model(two) == "m"
        assert meta.model(one) == "m"  # the second reader's end left the first's open
        with pytest.raises(StoreBusy, match="stayed locked"), store.writing():
            pass
    assert clock.now == pytest.approx(1.0)
    # The holder asserts that it got the lock: nothing of this process keeps the file.
    with store_held_by_another_process(db):
        assert [h.mode for h in lock_holders(db)] == ["write"]
    store.write(lambda con: meta.set_meta(con, model="again"))
    assert store.model() == "again"


def test_facelint_sql_locks_settings_on_an_instance_of_its_own(tmp_path: Path, capsys) -> None:
    """`facelint sql` turns external access off and locks the settings for a user's query;
    on the process's shared DuckDB that would refuse every later attach of a store."""
    db = tmp_path / "facelint.duckdb"
    Store(db, lock_timeout=1).write(lambda con: meta.set_meta(con, model="m"))
    assert main(["sql", "--db", str(db), "SELECT value FROM meta WHERE key = 'model'"]) == 0
    assert "m" in capsys.readouterr().out
    with open_store(db, read_only=True, timeout=1) as con:
        setting = "SELECT current_setting('enable_external_access')"
        assert con.execute(setting).fetchone() == (True,)
    assert Store(db, lock_timeout=1).model() == "m"
