"""Waits on the store said out loud: a CLI read, the daemon and a page that meet another
process's lock say within a second who holds it and how long they wait, and wait no
longer than their documented limit. A real lock held by a real process
(conftest.store_held_by_another_process); the page's note: test_dashboard_serving.py."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from daemon import cli
from daemon.common.statusfile import write_status
from daemon.common.storewait import held_by
from daemon.config import Settings
from daemon.notify import SystemdNotifier
from daemon.service import WAITING_FOR_STORE, Service
from store.connection import StoreBusy, lock_holders
from tests.conftest import copy_dev_faces, release, store_held_by_another_process

README = Path(__file__).resolve().parent.parent / "README.md"


class StampedStream(io.StringIO):
    """stderr that remembers when each line was written (monotonic seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.lines.append((time.monotonic(), line))
        return super().write(text)


def test_facelint_status_says_who_holds_the_store_within_a_second(dev_copy, monkeypatch, capsys):
    _, db = dev_copy
    monkeypatch.setenv("FACELINT_READ_WAIT", "1")
    err = StampedStream()
    with store_held_by_another_process(db) as holder:
        monkeypatch.setattr("sys.stderr", err)
        started = time.monotonic()
        code = cli.main(["status", "--json", "--db", str(db)])
        took = time.monotonic() - started
        monkeypatch.undo()
    assert code == 0  # the status file's figures stand in for the store's
    said = [(t - started, line) for t, line in err.lines if "waiting up to" in line]
    assert said, err.getvalue()
    first_after, first = said[0]
    assert first_after < 1.0, said
    assert f"pid {holder.pid}" in first and "held for writing by" in first
    assert "waiting up to 1 s (`read_wait`)" in first
    # No longer than its documented limit (plus starting up and the status file).
    assert took < 1.0 + 1.5
    out = json.loads(capsys.readouterr().out)
    assert out["store_readable"] is False and f"pid {holder.pid}" in out["store_message"]


def test_a_cli_read_gives_up_at_read_wait_naming_the_holder(dev_copy, monkeypatch):
    _, db = dev_copy
    monkeypatch.setenv("FACELINT_READ_WAIT", "0.5")
    err = StampedStream()
    with store_held_by_another_process(db) as holder:
        monkeypatch.setattr("sys.stderr", err)
        started = time.monotonic()
        code = cli.main(["top", "--db", str(db)])
        took = time.monotonic() - started
        monkeypatch.undo()
    assert code == 3
    assert took < 0.5 + 1.0
    last = err.lines[-1][1]
    assert "stayed locked by another process" in last and f"pid {holder.pid}" in last


def test_the_cli_read_wait_is_the_documented_one(tmp_path):
    """README's table row and the model agree (tests/test_readme.py keeps the whole
    table), and every CLI read opens the store with that wait, every write with
    lock_timeout."""
    row = re.search(r"^\| `read_wait` \| `([0-9.]+)` \|", README.read_text(encoding="utf-8"), re.M)
    assert row is not None, "README's configuration table has no read_wait row"
    documented = float(row.group(1))
    s = Settings(db=tmp_path / "x.duckdb")
    assert s.read_wait == documented == 5.0
    reader, writer = cli._store(s), cli._store(s, write=True)
    assert reader.lock_timeout == documented and writer.lock_timeout == s.lock_timeout
    assert reader.on_wait.limit == documented and reader.on_wait.setting == "read_wait"


def test_the_holder_is_named_as_the_daemon_when_it_is_one(dev_copy):
    _, db = dev_copy
    status = Path(f"{db}.status.json")
    with store_held_by_another_process(db) as holder:
        assert [h.pid for h in lock_holders(db)] == [holder.pid]
        assert lock_holders(db)[0].mode == "write"
        plain = held_by(db, status)
        assert plain.startswith(f"held for writing by pid {holder.pid} (python")
        write_status(status, {"pid": holder.pid, "state": "encoding", "heartbeat": time.time()})
        named = held_by(db, status)
    assert named == f"held for writing by the facelint daemon (pid {holder.pid}, encoding)"
    assert lock_holders(db) == []


def test_the_daemon_waits_daemon_store_wait_then_puts_the_work_back(tmp_path, seed_encodings):
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    db = seed_encodings(tmp_path / "facelint.duckdb")
    settings = Settings(root=root, db=db, workers=1, temp_sensor="", daemon_store_wait=0.5)
    now = [1000.0]
    service = Service(
        settings, temperature=lambda: 50.0, notifier=SystemdNotifier({}), clock=lambda: now[0]
    )
    service.open()
    try:
        with store_held_by_another_process(db) as holder:
            started = time.monotonic()
            assert service.step()  # the first reconcile: met the lock, gave up
            took = time.monotonic() - started
            status = json.loads(settings.status_path().read_text(encoding="utf-8"))
            assert service.state == WAITING_FOR_STORE and status["state"] == WAITING_FOR_STORE
            assert f"pid {holder.pid}" in status["message"]
            assert service.reconcile_due.is_set()  # put back, not lost
            release(holder)
        assert took < 0.5 + 2.0, took
        assert not service.step()  # nothing before the retry is due
        now[0] += 6.0
        assert service.step()
        assert service.ready and service.state == "idle"
        assert not service.reconcile_due.is_set()
    finally:
        service.close()


def test_store_busy_names_the_holder(dev_copy):
    from store.db import Store

    _, db = dev_copy
    with store_held_by_another_process(db) as holder, pytest.raises(StoreBusy) as busy:
        Store(db, lock_timeout=0.2).read(lambda con: None)
    assert f"pid {holder.pid}" in str(busy.value)
    assert os.getpid() != holder.pid


def test_an_open_that_waited_tells_the_whole_wait(dev_copy):
    """on_opened hears the whole wait once the open went through (the daemon keeps the
    longest in its status file); an open that never waited tells nothing."""
    from store.connection import open_store

    _, db = dev_copy
    now = [1000.0]
    heard: list[float] = []

    with store_held_by_another_process(db) as holder:

        def sleep(seconds: float) -> None:
            now[0] += seconds
            if now[0] - 1000.0 >= 7.0 and holder.poll() is None:
                release(holder)

        with open_store(
            db,
            read_only=True,
            timeout=60,
            clock=lambda: now[0],
            sleep=sleep,
            on_opened=heard.append,
        ):
            pass
    assert len(heard) == 1 and 7.0 <= heard[0] <= 7.0 + 3.0
    with open_store(db, read_only=True, on_opened=heard.append):
        pass
    assert len(heard) == 1
