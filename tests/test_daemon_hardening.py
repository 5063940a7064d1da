"""The daemon under hostile input, for real: a second daemon on the same store, by any of
its names, and the lock that dies with a killed one. Real subprocesses, DuckDB files,
notify socket. (A deleted store, said and rebuilt, and its backup restored: in-process,
tests/test_service_steps.py.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_dev_faces
from tests.daemon_harness import DaemonProcess

pytestmark = pytest.mark.slow

SMALL = ["Amy", "Penny", "Raj"]


@pytest.fixture
def tree(tmp_path: Path, seed_encodings) -> tuple[Path, Path]:
    """Three people, in a store that already holds every dev face's encoding: the
    daemon's start encodes nothing (what these tests watch comes after it)."""
    root = copy_dev_faces(tmp_path / "data", SMALL)
    return root, seed_encodings(tmp_path / "facelint.duckdb")


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
        # The same store by another name (a hard link in another folder), and `up`. Every
        # name (a symbolic link too) against a holder in-process: test_service_steps.py's
        # test_one_daemon_per_store_through_a_symlink_or_a_hard_link.
        (tmp_path / "other").mkdir()
        hard = tmp_path / "other" / "hard.duckdb"
        os.link(db, hard)
        for command, name in (
            (["daemon"], db),
            (["up", "--port", str(_free_port())], db),
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
