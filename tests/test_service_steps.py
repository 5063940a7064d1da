"""The daemon through its steps, in-process: a real store, a real watchdog observer on a
temp tree, real encoders; a fake clock and an injected temperature source are the seams.
What must stay end to end (signals, systemd, kill -9, the process lock) is in
tests/test_daemon.py."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pytest

from daemon.cli import human_status
from daemon.common.statusfile import STALE_SECONDS, read_status_file
from daemon.config import Settings
from daemon.notify import SystemdNotifier
from daemon.service import ROOT_MISSING, DaemonRunning, Service, daemon_lock
from daemon.status import read_status
from store.connection import open_store
from store.vocab import Decision
from tests.conftest import DEV_FACES, REPO, copy_dev_faces, real_files, store_rows


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


rows = store_rows


def store_paths(db: Path) -> set[str]:
    return {r[0] for r in rows(db, "SELECT path FROM files")}


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    """Wait (real time) until another thread made `predicate()` true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def seen(service: Service, what: str, timeout: float = 10.0) -> None:
    """Wait (real time) until the observer thread queued an event."""
    deadline = time.monotonic() + timeout
    while not len(service.queue):
        if time.monotonic() > deadline:
            raise AssertionError(f"the watcher never queued {what}")
        time.sleep(0.05)


@pytest.fixture
def daemon(tmp_path: Path, seed_encodings):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    # Encoding is not what these steps test (but for the interrupted encodes, which make
    # their own store): the store starts with every dev face's encoding.
    seed_encodings(tmp_path / "facelint.duckdb")
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


def test_a_lost_store_is_said_rebuilt_from_the_files_and_its_backup_restores_the_review(
    tmp_path, seed_encodings, caplog, monkeypatch
):
    """The store deleted under the daemon: said at once in the state, the status file,
    systemd's STATUS and the log; rebuilt from the files (every image encoded again: the
    encodings went with it); ordinary work goes on; a review backup made before it went
    is restored into the rebuilt store by README's own command."""
    import socket

    from daemon.cli import main
    from store.decisions import record_decision

    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    db = seed_encodings(tmp_path / "facelint.duckdb")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    said: list[str] = []
    listening = threading.Event()
    listening.set()

    def listen() -> None:  # as systemd does: every datagram read as it comes
        while listening.is_set():
            try:
                said.extend(sock.recv(65536).decode().split("\n"))
            except TimeoutError:
                continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    clock = FakeClock()
    settings = Settings(root=root, db=db, workers=1, quiet_seconds=0.5, temp_sensor="")
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(sock_path)})
    service = Service(settings, temperature=lambda: None, notifier=notifier, clock=clock)
    service.open()
    try:
        assert service.step() is True
        images = store_paths(db)
        with open_store(db, timeout=30) as con:
            a, b = con.execute("SELECT min(hash), max(hash) FROM files").fetchone()
            record_decision(con, a, b, Decision.DIFFERENT, "tester")
        backup = tmp_path / "review-backup.json"
        assert main(["export", "--db", str(db), "--decisions", str(backup)]) == 0
        for p in db.parent.glob(db.name + "*"):
            if p.is_file() and not p.name.endswith(".status.json"):
                p.unlink()
        with caplog.at_level("WARNING", logger="facelint"):
            service.heartbeat()  # notices within a heartbeat, not at the next change
            assert service.store_lost.is_set()
            assert service.step() is True
        assert service.state == "store lost" and "STORE LOST" in service.alert
        assert "STORE LOST" in caplog.text
        assert "STORE LOST" in read_status_file(settings.status_path()).fields["alert"]
        wait_until(
            lambda: any(m.startswith("STATUS=") and "STORE LOST" in m for m in said),
            "STATUS=... STORE LOST sent to systemd",
        )
        assert service.step() is True  # the rebuild: a full reconcile, every image encoded
        assert store_paths(db) == images == real_files(root)
        alert = service.alert
        assert f"Rebuilt from the files: {len(images)} images" in alert
        assert "was deleted" in alert and "decisions cannot be rebuilt" in alert
        assert rows(db, "SELECT count(*) FROM decisions") == [(0,)]
        assert service.state == "idle"
        # Ordinary work goes on in the rebuilt store.
        shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
        drain(service, clock, lambda: "Amy/leonard1.png" in store_paths(db), "a new file")
    finally:
        service.close()
        listening.clear()
        listener.join()
        sock.close()
    # The backup restores the decision into the rebuilt store, by the README's command.
    restore = next(
        line
        for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("facelint import --decisions") and backup.name in line
    )
    monkeypatch.chdir(tmp_path)  # where the backup is
    assert main([*shlex.split(restore, comments=True)[1:], "--db", str(db)]) == 0
    assert rows(db, "SELECT decision, decided_by FROM decisions") == [("different", "tester")]


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
    db.unlink()  # a store without the seeded encodings: these encodes are the point
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
    kept = db.rename(db.with_name("kept.duckdb"))  # back once the failure was seen
    db.mkdir()  # not a DuckDB file: every open fails
    assert service.step() is True
    assert service.state == "error" and service.message
    assert not service.ready
    db.rmdir()
    kept.rename(db)
    assert service.step() is False  # not before RETRY_SECONDS on the clock
    clock.advance(6)
    assert service.step() is True
    assert service.ready and service.state == "idle" and service.message == ""


@pytest.fixture(autouse=True)
def _seeded(request, tmp_path: Path, seed_encodings) -> None:
    """Stores made by make_service start with every dev face's encoding: these steps
    test watching, scanning and storing, not encoding."""
    if "daemon" not in request.fixturenames:
        seed_encodings(tmp_path / "facelint.duckdb")


# The polling observer's interval in these tests: each look lstat()s a tree of a few dozen
# files, and the default 2 s made every polling test wait out a few looks.
POLL_SECONDS = 0.2


def make_service(tmp_path: Path, root: Path, **settings: object) -> tuple[Service, FakeClock]:
    clock = FakeClock()
    settings.setdefault("poll_seconds", POLL_SECONDS)
    s = Settings(root=root, db=tmp_path / "facelint.duckdb", workers=1, **settings)  # type: ignore[arg-type]
    service = Service(s, temperature=lambda: None, notifier=SystemdNotifier({}), clock=clock)
    service.open()
    return service, clock


def drain(service: Service, clock: FakeClock, until, what: str, rounds: int = 40) -> None:
    """Step (advancing the clock past each quiet time) until `until()` holds."""
    for _ in range(rounds):
        if until():
            return
        if not service.step():
            time.sleep(0.1)  # the observer may still be reporting
            clock.advance(10)
    raise AssertionError(f"never reached: {what}")


def test_a_burst_of_200_files_is_stored_once_each(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    # The seeded store's files go (the root is empty on purpose); their encodings stay.
    service, clock = make_service(tmp_path, root, allow_empty=True)
    try:
        assert service.step()
        sources = sorted(p for p in DEV_FACES.rglob("*") if p.suffix in (".png", ".jpg"))
        for made in range(200):
            src = sources[made % len(sources)]
            folder = root / f"burst_{made % 7}"
            folder.mkdir(exist_ok=True)
            shutil.copyfile(src, folder / f"{made:03d}_{src.name}")
        db = service.s.db
        drain(service, clock, lambda: len(store_paths(db)) == 200, "200 files in the store")
        drain(service, clock, lambda: not len(service.queue), "an empty queue")
        assert rows(db, "SELECT count(*), count(DISTINCT path) FROM files") == [(200, 200)]
        distinct = rows(db, "SELECT count(DISTINCT hash) FROM files")[0][0]
        assert rows(db, "SELECT count(*) FROM embeddings")[0][0] == distinct  # once each
        assert rows(db, "SELECT count(*) - count(DISTINCT (lo, hi)) FROM pair_rows") == [(0,)]
        assert rows(db, "SELECT count(*) FROM pairs WHERE class_a = class_b") == [(0,)]
    finally:
        service.close()


def test_the_periodic_reconcile_repairs_what_the_watcher_never_saw(tmp_path):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    service, _clock = make_service(tmp_path, root)
    db = service.s.db
    try:
        assert service.step()
        # As after an inotify queue overflow: the store loses a row it never heard of.
        gone = "Penny/penny2.png"
        con = duckdb.connect(str(db))
        try:
            con.execute("DELETE FROM files WHERE path = ?", [gone])
        finally:
            con.close()
        assert service.step() is False
        service.request_reconcile()  # what the scheduler's job does every hour
        assert service.step() is True
        assert gone in store_paths(db)
        assert rows(db, "SELECT count(*) FROM runs WHERE kind = 'reconcile'") == [(2,)]
    finally:
        service.close()


def test_renaming_a_folder_relabels_and_deleting_it_removes_its_pairs(tmp_path):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj", "Joseph_Biden"])
    service, clock = make_service(tmp_path, root)
    db = service.s.db
    try:
        assert service.step()
        encoded = rows(db, "SELECT count(*) FROM embeddings")[0][0]
        ids = dict(rows(db, "SELECT path, id FROM files WHERE class = 'Raj'"))
        (root / "Raj").rename(root / "Raj Koothrappali")
        drain(
            service,
            clock,
            lambda: not any(p.startswith("Raj/") for p in store_paths(db)),
            "the folder rename",
        )
        after = dict(rows(db, "SELECT path, id FROM files WHERE class = 'Raj Koothrappali'"))
        assert sorted(after.values()) == sorted(ids.values())  # same identities
        assert rows(db, "SELECT count(*) FROM embeddings")[0][0] == encoded  # none re-encoded
        assert store_paths(db) == real_files(root)
        shutil.rmtree(root / "Raj Koothrappali")
        drain(
            service,
            clock,
            lambda: not any(p.startswith("Raj ") for p in store_paths(db)),
            "the folder delete",
        )
        assert rows(
            db, "SELECT count(*) FROM pairs WHERE class_a LIKE 'Raj%' OR class_b LIKE 'Raj%'"
        ) == [(0,)]
    finally:
        service.close()


def test_the_polling_observer_for_network_mounts(tmp_path):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Joseph_Biden"])
    service, clock = make_service(tmp_path, root, poll=True)
    db = service.s.db
    try:
        assert "Polling" in service.watcher.kind
        # The setting's interval, not watchdog's default (BaseObserver keeps it as timeout).
        assert service.watcher._root is not None
        assert service.watcher._root.timeout == POLL_SECONDS
        assert service.step()
        shutil.copy2(DEV_FACES / "Joe_Biden" / "biden2.jpg", root / "Amy" / "biden2.jpg")
        drain(
            service,
            clock,
            lambda: (
                rows(
                    db,
                    "SELECT count(*) FROM pairs WHERE path_a = 'Amy/biden2.jpg' "
                    "OR path_b = 'Amy/biden2.jpg'",
                )[0][0]
                > 0
            ),
            "pairs via the polling observer",
        )
    finally:
        service.close()


def test_a_name_that_is_not_utf8_is_skipped_and_never_blocks_others(tmp_path, caplog):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    service, clock = make_service(tmp_path, root)
    db = service.s.db
    try:
        assert service.step()
        bad = os.fsencode(root / "Penny") + b"/bad\xffname.jpg"
        with open(bad, "wb") as fh:
            fh.write((DEV_FACES / "Penny" / "penny1.png").read_bytes())
        shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
        with caplog.at_level("WARNING", logger="facelint"):
            drain(service, clock, lambda: "Amy/leonard1.png" in store_paths(db), "the valid file")
            drain(service, clock, lambda: not len(service.queue), "an empty queue")
        assert service.state == "idle"
        assert store_paths(db) == real_files(root) - {os.fsdecode(bad)[len(str(root)) + 1 :]}
        assert "skipped Penny/bad\\xffname.jpg: file name is not valid UTF-8" in caplog.text
    finally:
        service.close()


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_symbolic_links_are_never_followed(tmp_path, caplog, poll):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    elsewhere = copy_dev_faces(tmp_path / "elsewhere", ["Howard"])
    service, clock = make_service(tmp_path, root, poll=poll)
    db = service.s.db
    try:
        assert service.step()
        # The attack: move a class folder away and put a link to outside in its place at
        # once, so the folder's batch finds the link; a link to a folder inside the root
        # would pair every image with itself (1.0).
        (root / "Raj").rename(root / "Raj_moved")
        os.symlink(elsewhere / "Howard", root / "Raj")
        os.symlink(elsewhere / "Howard" / "howard1.png", root / "Amy" / "howard1.png")
        os.symlink(root / "Penny", root / "Penny2")
        with caplog.at_level("WARNING", logger="facelint"):
            drain(
                service,
                clock,
                lambda: any(p.startswith("Raj_moved/") for p in store_paths(db)),
                "the move",
            )
            drain(service, clock, lambda: not len(service.queue), "an empty queue")
        assert store_paths(db) == real_files(root)
        assert rows(db, "SELECT count(*) FROM pairs WHERE score > 0.99") == [(0,)]
        if not poll:
            assert "skipped Raj: folder is a symbolic link: not followed" in caplog.text
            assert "skipped Amy/howard1.png: symbolic link: not followed" in caplog.text
    finally:
        service.close()


def test_an_empty_root_at_start_removes_nothing_but_ordinary_deletes_stay(tmp_path, run_scan):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny", "Raj"])
    db = tmp_path / "facelint.duckdb"
    run_scan(root, db)
    before = store_paths(db)
    root.rename(tmp_path / "away")
    root.mkdir()  # an unmounted disk, or the wrong folder: empty
    service, clock = make_service(tmp_path, root)
    try:
        assert service.step()
        assert service.ready and "holds no image" in service.message
        assert store_paths(db) == before
        # Files that appear are stored, and deleting one is an ordinary delete.
        (root / "Amy").mkdir()
        shutil.copy2(DEV_FACES / "Amy" / "amy1.png", root / "Amy" / "new.png")
        drain(service, clock, lambda: "Amy/new.png" in store_paths(db), "a new file stored")
        (root / "Amy" / "new.png").unlink()
        drain(service, clock, lambda: "Amy/new.png" not in store_paths(db), "the delete")
        assert store_paths(db) == before
    finally:
        service.close()
    # Said on purpose, an empty root empties the store.
    shutil.rmtree(root / "Amy")
    service, clock = make_service(tmp_path, root, allow_empty=True)
    try:
        assert service.step()
        assert store_paths(db) == set()
    finally:
        service.close()


# -- the root going away and coming back ------------------------------------------------------


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_a_root_that_goes_is_said_and_followed_when_it_comes_back(tmp_path, caplog, poll):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny"])
    service, clock = make_service(tmp_path, root, poll=poll, quiet_seconds=0.5)
    db = service.s.db
    try:
        assert service.step()
        before = store_paths(db)
        # rm -rf data: said at once, in the state, the message, the status file and the log.
        with caplog.at_level("WARNING", logger="facelint"):
            shutil.rmtree(root)
            drain(service, clock, lambda: service.state == ROOT_MISSING, "root missing")
        assert "is gone" in service.snapshot()["message"]
        assert "is gone" in caplog.text
        written = read_status_file(service.s.status_path()).fields
        assert written["state"] == ROOT_MISSING and "is gone" in written["message"]
        for _ in range(3):  # nothing runs on a missing root, and nothing is removed
            service.step()
            time.sleep(0.1)
            clock.advance(10)
        assert service.state == ROOT_MISSING
        assert store_paths(db) == before and not root.exists()  # not even an empty data/

        # A restore: a new data/ with files. Watched and reconciled at once.
        copy_dev_faces(root, ["Amy", "Raj"])
        drain(service, clock, lambda: store_paths(db) == real_files(root), "the restored tree")
        # A file 15 s later is seen by the new watch.
        clock.advance(15)
        time.sleep(0.2)
        shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
        drain(service, clock, lambda: "Amy/leonard1.png" in store_paths(db), "a new file")

        # mv data away, add a file there, mv it back: the file added meanwhile is stored.
        away = tmp_path / "away"
        root.rename(away)
        drain(service, clock, lambda: service.state == ROOT_MISSING, "root moved away")
        shutil.copy2(DEV_FACES / "Penny" / "penny1.png", away / "Raj" / "penny1.png")
        for _ in range(3):  # the old watch's events while away store nothing, lose nothing
            service.step()
            time.sleep(0.1)
            clock.advance(10)
        away.rename(root)
        drain(service, clock, lambda: "Raj/penny1.png" in store_paths(db), "added while away")

        # Away and back between two steps: the parent's watch (or the poll) still tells.
        root.rename(away)
        shutil.copy2(DEV_FACES / "Howard" / "howard1.png", away / "Raj" / "howard1.png")
        away.rename(root)
        drain(service, clock, lambda: "Raj/howard1.png" in store_paths(db), "away and back")
        drain(service, clock, lambda: not len(service.queue), "an empty queue")
        assert store_paths(db) == real_files(root)
        assert service.state == "idle" and "is gone" not in service.message
    finally:
        service.close()


# -- nothing outside the root, nothing followed, nothing opened that is not a file -----------


@pytest.mark.parametrize("poll", [False, True], ids=["inotify", "polling"])
def test_a_link_to_the_parent_never_keeps_the_queue_busy(tmp_path, caplog, poll):
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    service, clock = make_service(tmp_path, root, poll=poll)
    try:
        assert service.step()
        with caplog.at_level("WARNING", logger="facelint"):
            os.symlink("..", root / "up")
            seen(service, "the link")
            # The status file beside the store changes at every heartbeat; the link
            # leads to its folder, which must not matter.
            for _ in range(30):
                service.heartbeat()
                if not service.step():
                    time.sleep(0.1)
                    clock.advance(10)
                if not len(service.queue) and "skipped up" in caplog.text:
                    break
            assert len(service.queue) == 0
            for _ in range(5):  # and it stays empty
                service.heartbeat()
                time.sleep(0.3)
                assert service.step() is False and len(service.queue) == 0
        assert "skipped up: folder is a symbolic link: not followed" in caplog.text
        assert store_paths(service.s.db) == real_files(root)
    finally:
        service.close()


def test_fifos_and_hard_links_are_skipped_with_a_reason_and_never_opened(tmp_path, caplog):
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    outside = tmp_path / "outside.png"
    shutil.copy2(DEV_FACES / "Penny" / "penny1.png", outside)
    service, clock = make_service(tmp_path, root)
    db = service.s.db
    try:
        assert service.step()
        with caplog.at_level("WARNING", logger="facelint"):
            os.mkfifo(root / "Amy" / "pipe.jpg")
            os.link(outside, root / "Amy" / "outside.png")
            shutil.copy2(DEV_FACES / "Leonard" / "leonard1.png", root / "Amy" / "leonard1.png")
            drain(service, clock, lambda: "Amy/leonard1.png" in store_paths(db), "the plain file")
            drain(service, clock, lambda: not len(service.queue), "an empty queue")
        assert store_paths(db) == real_files(root) - {"Amy/pipe.jpg", "Amy/outside.png"}
        assert "skipped Amy/pipe.jpg: named pipe (FIFO): not a regular file" in caplog.text
        assert "skipped Amy/outside.png: hard link: may name a file outside the root" in (
            caplog.text
        )
    finally:
        service.close()


# -- store errors lose nothing; a status that is not written is not believed ---------------


def _chattr(flag: str, path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    done = subprocess.run(["chattr", flag, str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr {flag} not permitted here: {done.stderr.decode().strip()}")


@pytest.mark.parametrize("how", ["corrupt", "immutable"])
def test_paths_that_fail_on_the_store_wait_for_it_and_are_never_dropped(tmp_path, how):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Penny"])
    service, clock = make_service(tmp_path, root)
    db = service.s.db
    try:
        assert service.step()
        before = store_paths(db)
        original = db.read_bytes()
        if how == "corrupt":
            with db.open("r+b") as fh:  # in place: the same file, not a lost store
                fh.write(b"\0" * 8192)
        else:
            _chattr("+i", db)
        try:
            for name in ("leonard1.png", "leonard2.png"):
                shutil.copy2(DEV_FACES / "Leonard" / name, root / "Amy" / name)
            seen(service, "the new files")
            # Far more failures than a bad file gets (3, then split, then dropped).
            for _ in range(12):
                service.step()
                time.sleep(0.05)
                clock.advance(6)
            assert len(service.queue) == 2 and service.queue.held() == 2
            assert service.state == "error"
            assert "store unavailable" in service.message
            assert "2 changed paths wait for it" in service.message
            written = read_status_file(service.s.status_path()).fields
            assert written["waiting_for_store"] == 2
            if how == "immutable":  # readable: `facelint status` shows them
                rows = dict(human_status(read_status(service.s), time.time()))
                assert rows["waiting for store"].startswith("2 changed paths")
        finally:
            if how == "corrupt":
                with db.open("r+b") as fh:
                    fh.write(original)
            else:
                _chattr("-i", db)
        drain(
            service,
            clock,
            lambda: store_paths(db) == before | {"Amy/leonard1.png", "Amy/leonard2.png"},
            "the held paths stored",
        )
        drain(service, clock, lambda: not len(service.queue), "an empty queue")
        assert service.state == "idle" and service.queue.held() == 0
        assert service.snapshot()["waiting_for_store"] == 0
    finally:
        service.close()


def test_a_status_file_that_cannot_be_written_reads_as_stale(tmp_path, caplog):
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    service, _ = make_service(tmp_path, root)
    path = service.s.status_path()
    try:
        assert service.step()
        service.heartbeat()
        last = json.loads(path.read_text(encoding="utf-8"))
        assert last["state"] == "idle"
        _chattr("+i", path)
        try:
            with caplog.at_level("WARNING", logger="facelint"):
                for _ in range(3):
                    time.sleep(0.05)
                    service.heartbeat()
            # Not refreshed: the old file stays as it was, its heartbeat ageing.
            assert json.loads(path.read_text(encoding="utf-8")) == last
            assert caplog.text.count("cannot write status file") == 1  # said once
        finally:
            _chattr("-i", path)
        # What `facelint status` prints once ten heartbeats were missed.
        assert STALE_SECONDS <= 20
        later = last["heartbeat"] + STALE_SECONDS + 1
        out = read_status(service.s, now=later)
        assert out["running"] is False and out["state"] == "daemon not running"
        rows = dict(human_status(out, later))
        assert rows["state"] == "daemon not running"
        assert re.search(
            r"last heartbeat \d+ s ago\): the status file says 'idle' but was not written",
            rows["message"],
        )
        assert "cannot write its status file" in rows["message"]
    finally:
        service.close()


# -- one daemon per store, whatever path names it ------------------------------------------

REFUSED = r"another facelint daemon( \(pid \d+\))? already keeps the store"


def refused(settings: Settings, db: Path, match: str = REFUSED) -> None:
    """A second daemon_lock, naming the store by `db`, is refused."""
    with pytest.raises(DaemonRunning, match=match), daemon_lock(settings.with_overrides(db=db)):
        pass


def test_one_daemon_per_store_through_a_symlink_or_a_hard_link(tmp_path):
    db = tmp_path / "state" / "facelint.duckdb"
    s = Settings(root=tmp_path / "data", db=db)
    link = tmp_path / "link.duckdb"
    hard = tmp_path / "elsewhere" / "hard.duckdb"
    with daemon_lock(s):
        assert db.is_file()  # created under the path lock, then locked by inode
        link.symlink_to(db)
        hard.parent.mkdir()
        os.link(db, hard)
        for other in (db, link, hard):
            refused(s, other)
        refused(s, hard, rf"\(pid {os.getpid()}\)")  # the holder's, found by identity
    for other in (link, hard, db):  # released: any name locks again
        with daemon_lock(s.with_overrides(db=other)):
            pass


def test_a_store_that_does_not_exist_yet_is_locked_whatever_names_it(tmp_path):
    real = tmp_path / "new" / "real.duckdb"
    real.parent.mkdir()
    link = tmp_path / "link.duckdb"
    link.symlink_to(real)  # dangling: the store does not exist yet
    s = Settings(root=tmp_path / "data", db=link)
    with daemon_lock(s):
        assert real.is_file()
        refused(s, real)


def test_a_rebuilt_store_is_locked_too(tmp_path):
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    s = Settings(root=root, db=tmp_path / "facelint.duckdb", workers=1)
    with daemon_lock(s) as lock:
        clock = FakeClock()
        service = Service(
            s, temperature=lambda: None, notifier=SystemdNotifier({}), clock=clock, lock=lock
        )
        service.open()
        try:
            assert service.step()
            first = lock.identity
            s.db.unlink()
            service.heartbeat()
            assert service.step()  # said lost
            assert service.step()  # rebuilt: a new file
            service.step()
            assert lock.identity is not None and lock.identity != first
            hard = tmp_path / "hard.duckdb"
            os.link(s.db, hard)
            refused(s, hard)
        finally:
            service.close()
