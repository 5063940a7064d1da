"""`facelint up` on the defaults: data/ created, the daemon ready, the dashboard serving."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tests.daemon_harness import DaemonProcess, wait_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_up_runs_daemon_and_dashboard_on_the_defaults(tmp_path):
    port = free_port()
    # No root, no store argument: the defaults, relative to the working directory.
    d = DaemonProcess(
        tmp_path / "data",
        tmp_path / "facelint.duckdb",
        tmp_path,
        env={"FACELINT_PORT": str(port)},
        command=["up"],
    )
    try:
        d.wait_ready()
        assert (tmp_path / "data").is_dir()
        assert (tmp_path / "facelint.duckdb").is_file()
        wait_for(lambda: healthy(port), 60, "the dashboard's health endpoint")
        assert d.terminate() == 0
    finally:
        d.close()
    wait_for(lambda: not healthy(port), 20, "the dashboard to stop with the daemon")
