"""The daemon through its steps, in-process: a real store, a real watchdog observer on a
temp tree, real encoders; a fake clock and an injected temperature source are the seams.
What must stay end to end (signals, systemd, kill -9, the process lock) is in
tests/test_daemon.py."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb
import pytest

from daemon.config import Settings
from daemon.notify import SystemdNotifier
from daemon.service import Service
from tests.conftest import DEV_FACES, copy_dev_faces


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def store_paths(db: Path) -> set[str]:
    return {r[0] for r in rows(db, "SELECT path FROM files")}


def seen(service: Service, what: str, timeout: float = 10.0) -> None:
    """Wait (real time) until the observer thread queued an event."""
    deadline = time.monotonic() + timeout
    while not len(service.queue):
        if time.monotonic() > deadline:
            raise AssertionError(f"the watcher never queued {what}")
        time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path: Path):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    temperature = [50.0]
    clock = FakeClock()
    settings = Settings(
        root=root,
        db=tmp_path / "facelint.duckdb",
        workers=1,
        quiet_seconds=0.5,
        temp_sensor="",
    )
    service = Service(
        settings,
        temperature=lambda: temperature[0],
        notifier=SystemdNotifier({}),
        clock=clock,
    )
    service.open()
    try:
        yield service, clock, temperature
    finally:
        service.close()


def batch_due(service: Service, clock: FakeClock, what: str) -> None:
    seen(service, what)
    time.sleep(0.3)  # the rest of the burst
    clock.advance(10)


def step_batch(service: Service, clock: FakeClock) -> bool:
    """Step until a batch ran: a file whose last event was not a close leaves the queue
    once two looks, a quiet time apart on the clock, saw the same size and mtime."""
    for _ in range(3):
        if service.step():
            return True
        clock.advance(10)
    return False


def test_reconcile_then_a_new_file_then_a_batch_that_changed_nothing(daemon):
    service, clock, _ = daemon
    db = service.s.db
    assert not service.ready
    assert service.step() is True  # the first reconcile is the start
    assert service.ready and service.state == "idle"
    assert store_paths(db) == {
        p.relative_to(service.root).as_posix() for p in service.root.rglob("*.*")
    }
    assert service.totals["images"] == len(store_paths(db))
    assert service.step() is False  # nothing to do

    new = service.root / "Amy" / "biden.jpg"
    shutil.copy2(DEV_FACES / "Joe_Biden" / "biden.jpg", new)
    batch_due(service, clock, "the new file")
    assert step_batch(service, clock)
    assert "Amy/biden.jpg" in store_paths(db)
    assert rows(db, "SELECT count(*) FROM embeddings")[0][0] == service.totals["encoded_total"]

    # An event for a file that did not change: one read-only open, nothing written.
    runs = rows(db, "SELECT count(*) FROM runs")[0][0]
    before = db.stat().st_mtime_ns, db.stat().st_size
    service.queue.touch("Amy/biden.jpg", ready_now=True)
    clock.advance(10)
    assert service.step() is True
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == runs
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before
    assert service.state == "idle"


def test_a_lost_store_is_said_and_rebuilt_from_the_files(daemon):
    service, _, _ = daemon
    db = service.s.db
    assert service.step() is True
    images = len(store_paths(db))
    for p in db.parent.glob(db.name + "*"):
        if p.is_file() and not p.name.endswith(".status.json"):
            p.unlink()
    service.heartbeat()  # notices within a heartbeat, not at the next change
    assert service.store_lost.is_set()
    assert service.step() is True
    assert service.state == "store lost" and "STORE LOST" in service.alert
    assert service.step() is True  # the rebuild: a full reconcile
    assert len(store_paths(db)) == images
    assert f"Rebuilt from the files: {images} images" in service.alert
    assert service.state == "idle"


def test_a_hot_cpu_pauses_work_until_it_cools(daemon):
    service, clock, temperature = daemon
    db = service.s.db
    assert service.step() is True
    temperature[0] = 80.0
    assert service.check_temperature() is True
    assert "above 72 °C" in service.message
    shutil.copytree(DEV_FACES / "Joe_Biden", service.root / "Joe_Biden")
    batch_due(service, clock, "the new folder")
    assert service.step() is False
    assert service.state == "throttled" and service.snapshot()["throttled"] is True
    assert not any(p.startswith("Joe_Biden/") for p in store_paths(db))
    temperature[0] = 70.0  # between the marks: still paused (hysteresis)
    assert service.check_temperature() is True
    assert service.step() is False
    temperature[0] = 60.0
    assert service.check_temperature() is False
    assert service.message == ""
    assert step_batch(service, clock)
    assert {p for p in store_paths(db) if p.startswith("Joe_Biden/")} == {
        f"Joe_Biden/{p.name}" for p in (DEV_FACES / "Joe_Biden").iterdir()
    }
    assert service.state == "idle"


def test_encodes_a_hot_cpu_interrupted_are_finished_once_it_cools(daemon):
    service, clock, temperature = daemon
    db = service.s.db
    assert service.step() is True
    shutil.copytree(DEV_FACES / "Joe_Biden", service.root / "Joe_Biden")
    batch_due(service, clock, "the new folder")
    calls = []

    def hot_after_the_first_encode() -> bool:
        calls.append(1)
        if len(calls) == 2:
            temperature[0] = 90.0
            service.check_temperature()
        return Service._before_encode(service)

    service.pipeline.before_encode = hot_after_the_first_encode
    assert step_batch(service, clock)
    assert service.encodes_interrupted
    new = {p for p in store_paths(db) if p.startswith("Joe_Biden/")}
    assert len(new) == len(list((DEV_FACES / "Joe_Biden").iterdir()))
    encoded = rows(db, "SELECT count(*) FROM embeddings")[0][0]
    assert service.step() is False  # still hot
    temperature[0] = 50.0
    service.check_temperature()
    assert service.step() is True
    assert rows(db, "SELECT count(*) FROM embeddings")[0][0] > encoded
    assert not service.encodes_interrupted
    # Every content is encoded now.
    assert (
        rows(db, "SELECT count(DISTINCT hash) FROM files")[0][0]
        == rows(db, "SELECT count(*) FROM embeddings")[0][0]
    )


def test_a_failed_step_is_shown_and_retried_only_after_a_pause(daemon):
    service, clock, _ = daemon
    db = service.s.db
    db.mkdir()  # not a DuckDB file: every open fails
    assert service.step() is True
    assert service.state == "error" and service.message
    assert not service.ready
    db.rmdir()
    assert service.step() is False  # not before RETRY_SECONDS on the clock
    clock.advance(6)
    assert service.step() is True
    assert service.ready and service.state == "idle" and service.message == ""
