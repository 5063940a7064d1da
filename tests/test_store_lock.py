"""open_store's waiting for another process's lock, on an injected clock: a real lock held
by a real process, and no real second spent waiting (the one scan that really waits:
tests/test_scan.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from store.connection import StoreBusy, open_store
from tests.conftest import release, store_held_by_another_process


class FakeClock:
    """Time that moves only when the code under test sleeps; `on_sleep` runs after
    each sleep (to let go of a lock at a chosen moment)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.on_sleep = lambda: None

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    with open_store(db) as con:
        con.execute("INSERT INTO meta VALUES ('note', 'before')")
    return db


def test_a_lock_held_past_the_deadline_is_store_busy(store):
    fake = FakeClock()
    waits: list[tuple[float, str]] = []
    with (
        store_held_by_another_process(store),
        pytest.raises(StoreBusy) as busy,
        open_store(
            store,
            timeout=60.0,
            on_wait=lambda waited, why: waits.append((waited, why)),
            clock=fake.clock,
            sleep=fake.sleep,
        ),
    ):
        pytest.fail("opened a store another process holds")
    assert "stayed locked by another process for 60 s" in str(busy.value)
    # Told before every retry, with the time waited so far and DuckDB's reason.
    assert len(waits) == len(fake.sleeps)
    assert [w for w, _ in waits] == sorted(w for w, _ in waits)
    assert all("lock" in why.lower() for _, why in waits)
    # Jittered backoff: from tens of milliseconds up to at most 2 s × 1.5 between tries,
    # never sleeping past the deadline.
    assert fake.sleeps[0] <= 0.075
    assert max(fake.sleeps) <= 3.0
    assert fake.now - 1000.0 == pytest.approx(60.0, abs=1e-6)
    assert len(fake.sleeps) < 60 / 0.5  # a retry every 2 s or so, not a spin


def test_a_lock_let_go_while_waiting_opens_and_writes(store):
    fake = FakeClock()
    waits: list[float] = []
    with store_held_by_another_process(store) as holder:

        def let_go_after_ten_seconds() -> None:
            if fake.now - 1000.0 >= 10.0 and holder.poll() is None:
                release(holder)

        fake.on_sleep = let_go_after_ten_seconds
        with open_store(
            store,
            timeout=600.0,
            on_wait=lambda waited, why: waits.append(waited),
            clock=fake.clock,
            sleep=fake.sleep,
        ) as con:
            con.execute("UPDATE meta SET value = 'after' WHERE key = 'note'")
    assert waits and waits[-1] >= 10.0 - 3.0
    assert 10.0 <= fake.now - 1000.0 < 15.0
    con = duckdb.connect(str(store), read_only=True)
    try:
        assert con.execute("SELECT value FROM meta WHERE key = 'note'").fetchall() == [("after",)]
    finally:
        con.close()


def test_a_read_waits_for_a_writer_too(store):
    """DuckDB's writer excludes readers of other processes: a read-only open waits."""
    fake = FakeClock()
    with store_held_by_another_process(store) as holder:
        fake.on_sleep = lambda: release(holder) if holder.poll() is None else None
        with open_store(store, read_only=True, clock=fake.clock, sleep=fake.sleep) as con:
            assert con.execute("SELECT value FROM meta WHERE key = 'note'").fetchall() == [
                ("before",)
            ]
    assert len(fake.sleeps) == 1


def test_an_error_that_is_not_a_lock_is_raised_at_once(tmp_path):
    fake = FakeClock()
    bad = tmp_path / "not-a-store.duckdb"
    bad.write_bytes(b"this is not a DuckDB file" * 100)
    with pytest.raises(duckdb.Error), open_store(bad, clock=fake.clock, sleep=fake.sleep):
        pass
    assert fake.sleeps == []
