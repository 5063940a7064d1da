"""Running the real daemon as a subprocess, with a real datagram socket as NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from store.connection import StoreBusy, StoreMissing, open_store

REPO = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def query(db: Path, sql: str, params: list | None = None) -> list[tuple] | None:
    """A read-only query, or None while the daemon holds the store (or before it made
    one). Through the store's own open, which waits for nothing at timeout 0."""
    try:
        with open_store(db, read_only=True, timeout=0) as con:
            return con.execute(sql, params or []).fetchall()
    except (StoreBusy, StoreMissing):
        return None


def query_when_free(db: Path, sql: str, params: list | None = None, timeout: float = 30) -> list:
    result: list = []

    def answered() -> bool:
        rows = query(db, sql, params)
        if rows is None:
            return False
        result.append(rows)
        return True

    wait_for(answered, timeout, f"the store to answer {sql!r}")
    return result[-1]


class DaemonProcess:
    def __init__(
        self,
        root: Path,
        db: Path,
        tmp: Path,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ):
        self.root, self.db, self.tmp = root, db, tmp
        self.messages: list[str] = []
        self.sock_path = tmp / f"notify-{time.monotonic_ns()}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.2)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._closed = False
        full_env = dict(os.environ)
        full_env.update(
            {
                "NOTIFY_SOCKET": str(self.sock_path),
                "WATCHDOG_USEC": "2000000",
                "FACELINT_QUIET_SECONDS": "0.5",
                "FACELINT_CONFIG": str(tmp / "no-config.toml"),
                # One encoder process: each more loads the models again (a second of CPU
                # per daemon start), and the suite runs two test workers on two cores.
                "FACELINT_WORKERS": "1",
                "PYTHONPATH": str(REPO),
            }
        )
        full_env.update(env or {})
        full_env.pop("WATCHDOG_PID", None)
        self.log_path = tmp / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon.cli",
                *(command or ["daemon", str(root), "--db", str(db)]),
            ],
            cwd=str(tmp),
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._reader.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.decode().split("\n"))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        wait_for(
            lambda: "READY=1" in self.messages or self.proc.poll() is not None,
            timeout,
            "READY=1",
        )
        assert self.proc.poll() is None, f"daemon exited early:\n{self.log()}"

    def status(self) -> dict[str, Any]:
        path = Path(str(self.db) + ".status.json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_idle(self, timeout: float = 90) -> None:
        """Idle with an empty queue, twice in a row (a batch may be about to start)."""

        def idle() -> bool:
            s = self.status()
            return s.get("state") == "idle" and s.get("queue") == 0

        wait_for(idle, timeout, "the daemon to be idle")
        time.sleep(1.2)
        wait_for(idle, timeout, "the daemon to be idle")

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._closed = True
        self.sock.close()
        self._log.close()
