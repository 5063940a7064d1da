"""sd_notify protocol against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.notify import SystemdNotifier

# sockaddr_un.sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket and the NOTIFY_SOCKET value that reaches it."""
    path = tmp_path / "notify.sock"
    short_dir = None
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        # Deeply nested temp dirs can exceed the limit; fall back to a short one.
        short_dir = tempfile.mkdtemp(prefix="fl-", dir="/tmp")
        path = Path(short_dir) / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    try:
        yield sock, str(path)
    finally:
        sock.close()
        if short_dir:
            path.unlink(missing_ok=True)
            os.rmdir(short_dir)


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def _assert_nothing_pending(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        sock.settimeout(2.0)


def test_ready_status_watchdog_stopping_datagrams(listener):
    sock, path = listener
    n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "120000000"})
    assert n.enabled

    assert n.ready() is True
    assert _recv(sock) == "READY=1"
    assert n.status("encoding 10/200 images")
    assert _recv(sock) == "STATUS=encoding 10/200 images"
    assert n.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    assert n.stopping()
    assert _recv(sock) == "STOPPING=1"
    _assert_nothing_pending(sock)


def test_fields_are_sent_as_one_datagram_in_order(listener):
    sock, path = listener
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    n.ready(status="watching /srv/faces")
    assert _recv(sock) == "READY=1\nSTATUS=watching /srv/faces"
    n.notify(STATUS="paused: 75.0 °C", WATCHDOG=True)
    assert _recv(sock) == "STATUS=paused: 75.0 °C\nWATCHDOG=1"
    n.stopping(status="closing store")
    assert _recv(sock) == "STOPPING=1\nSTATUS=closing store"


def test_newline_in_status_cannot_inject_a_field(listener):
    sock, path = listener
    SystemdNotifier({"NOTIFY_SOCKET": path}).status("bad name\nREADY=1")
    assert _recv(sock) == "STATUS=bad name READY=1"


def test_without_notify_socket_everything_is_a_noop(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    n = SystemdNotifier()
    assert not n.enabled
    assert n.ready() is False
    assert n.status("x") is False
    assert n.watchdog() is False
    assert n.stopping() is False
    assert n.notify(READY=1) is False
    assert n.watchdog_interval() is None


def test_reads_os_environ_at_construction(listener, monkeypatch):
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    SystemdNotifier().ready()
    assert _recv(sock) == "READY=1"


def test_watchdog_interval_is_half_of_watchdog_usec(listener):
    _, path = listener
    two_minutes = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "120000000"})
    assert two_minutes.watchdog_interval() == pytest.approx(60.0)
    half_second = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000"})
    assert half_second.watchdog_interval() == pytest.approx(0.25)
    assert SystemdNotifier({"NOTIFY_SOCKET": path}).watchdog_interval() is None
    for bad in ("", "0", "-5", "soon"):
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": bad}
        assert SystemdNotifier(env).watchdog_interval() is None


def test_watchdog_pid_must_name_this_process(listener):
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "120000000"}
    mine = SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval() == pytest.approx(60.0)

    # A child that inherited its parent's environment must not ping for it.
    other = SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval() is None
    assert other.watchdog() is False
    _assert_nothing_pending(sock)
    # Other messages are still allowed: WATCHDOG_PID only concerns the watchdog.
    assert other.status("ok")
    assert _recv(sock) == "STATUS=ok"


def test_abstract_namespace_socket():
    name = f"facelint-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        n = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert n.enabled
        assert n.ready()
        assert _recv(sock) == "READY=1"


@pytest.mark.parametrize("value", ["relative/path.sock", "@", "vsock:2:1234"])
def test_unsupported_addresses_disable_notification(value, caplog):
    with caplog.at_level(logging.WARNING, logger="facelint.notify"):
        n = SystemdNotifier({"NOTIFY_SOCKET": value})
    assert not n.enabled
    assert n.ready() is False
    assert "not a supported address" in caplog.text


def test_send_failure_never_raises_and_warns_once(tmp_path, caplog):
    n = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.DEBUG, logger="facelint.notify"):
        for _ in range(5):
            assert n.watchdog() is False
            assert n.status("still here") is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()


def test_send_failure_after_listener_goes_away(listener, caplog):
    sock, path = listener
    n = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert n.ready()
    assert _recv(sock) == "READY=1"
    sock.close()
    with caplog.at_level(logging.WARNING, logger="facelint.notify"):
        assert n.status("nobody listening") is False
        assert n.status("nobody listening") is False
    assert len(caplog.records) == 1
