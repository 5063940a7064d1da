"""`facelint up` on the defaults: data/ created, the daemon ready, the dashboard serving."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import urllib.request
from pathlib import Path

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


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "how", [signal.SIGKILL, signal.SIGHUP, signal.SIGINT], ids=["SIGKILL", "SIGHUP", "SIGINT"]
)
def test_up_on_the_defaults_serves_and_the_dashboard_dies_with_up_however_up_ends(tmp_path, how):
    """No root, no store argument: data/ and the store made relative to the working
    directory, the daemon ready, the dashboard healthy; and however `up` ends (kill -9, a
    closed terminal, Ctrl-C) the dashboard ends with it. A service manager's SIGTERM:
    tests/test_dashboard_serving.py's `facelint up`, whose server is up anyway."""
    port = free_port()
    d = DaemonProcess(
        tmp_path / "data",
        tmp_path / "facelint.duckdb",
        tmp_path,
        env={"FACELINT_PORT": str(port)},
        command=["up"],
    )
    kids: list[int] = []
    try:
        d.wait_ready()
        assert (tmp_path / "data").is_dir()
        assert (tmp_path / "facelint.duckdb").is_file()
        wait_for(lambda: healthy(port), 60, "the dashboard's health endpoint")
        kids = children(d.proc.pid)
        assert kids, "up has no child process"
        d.proc.send_signal(how)
        code = d.proc.wait(timeout=60)
        if how == signal.SIGHUP:
            assert code == 0  # a clean stop, like SIGTERM
        if how == signal.SIGINT:
            assert code == 130  # Ctrl-C: interrupted, as README says
        wait_for(lambda: port_free(port), 10, "the dashboard's port to be free")
        wait_for(lambda: not any(alive(k) for k in kids), 10, "the dashboard to end")
    finally:
        for kid in kids:  # never leave one behind, whatever failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(kid, signal.SIGKILL)
        d.close()
