"""Starting the review dashboard: `facelint dashboard` runs Streamlit on dashboard/serve.py
(dashboard/app.py behind a Host check on every request).

The dashboard takes its settings as arguments after `--` and imports no daemon module but
daemon/config.py; this is the one place where the settings facelint resolved become
those arguments (config.settings_argv, read back by config.settings_from_argv).
"""

from __future__ import annotations

import importlib.util
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from daemon.common.parentdeath import pass_on_death
from daemon.config import Settings, settings_argv


def _app_path() -> Path:
    # Located, not imported: importing the dashboard package here would pull Streamlit
    # into every facelint command.
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the dashboard package is not installed alongside facelint")
    return Path(next(iter(spec.submodule_search_locations))) / "serve.py"


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Bind addresses that mean "every interface": no one name says how the dashboard is reached.
_EVERY_INTERFACE = ("0.0.0.0", "::", "")


def allowed_hosts(settings: Settings) -> list[str]:
    """The Host header values the dashboard answers to (Streamlit's server.allowedHosts).

    A page elsewhere that points its own name at this address (DNS rebinding) sends that
    name as Host, with a matching Origin, so Streamlit's same-origin check lets it in;
    the Host check does not. Accepted: the address served, localhost, this machine's
    names when it serves every interface, and `allowed_hosts` (a proxy's name, say).
    """
    hosts = {"localhost", "127.0.0.1", "::1"}
    address = settings.address.strip().strip("[]").lower()
    if address in _EVERY_INTERFACE:
        for name in (socket.gethostname(), socket.getfqdn()):
            hosts.add(name.lower())
    else:
        hosts.add(address)
    hosts.update(settings.allowed_hosts)
    return sorted(h for h in hosts if h)


def dashboard_command(settings: Settings) -> list[str]:
    """The command line that serves the dashboard for these settings."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(_app_path()),
        "--server.address",
        settings.address,
        "--server.port",
        str(settings.port),
        # Pinned, whatever a ~/.streamlit/config.toml says: a foreign Origin is refused
        # (CORS), a form post needs the session's token (XSRF), a foreign Host is refused.
        "--server.enableCORS",
        "true",
        "--server.enableXsrfProtection",
        "true",
        *[arg for host in allowed_hosts(settings) for arg in ("--server.allowedHosts", host)],
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        # A served dashboard, not a script being edited: no watch on its source files
        # (Streamlit's default watches every module it imported, to rerun on a save).
        "--server.fileWatcherType",
        "none",
        # One log format for the daemon and the dashboard beside it (journald, `up`).
        "--logger.messageFormat",
        LOG_FORMAT,
        "--",
        # Every setting that differs from its default, so the dashboard sees exactly these
        # settings; the paths absolute, whatever the working directory Streamlit keeps.
        *settings_argv(
            settings.with_overrides(
                db=settings.db.absolute(),
                root=settings.root.absolute(),
                status_file=settings.status_path().absolute(),
            )
        ),
    ]


def start_dashboard(settings: Settings) -> subprocess.Popen:
    """Streamlit for these settings, as a child that dies with this process however it
    ends (SIGKILL, a SIGHUP with no handler, a crash): nothing is left serving the port.
    Call it from the main thread (daemon/common/parentdeath.py says why)."""
    return subprocess.Popen(dashboard_command(settings), preexec_fn=pass_on_death())


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within `timeout` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_dashboard(settings: Settings) -> int:
    """Serve the dashboard in the foreground until it stops; its exit code.

    A SIGTERM to facelint (`kill`, a service manager) is passed on: Streamlit must not
    outlive the command that started it.
    """
    print(
        f"facelint dashboard: http://{settings.address}:{settings.port}/ "
        f"(file actions {'on' if settings.allow_file_actions else 'off'})",
        file=sys.stderr,
    )
    proc = start_dashboard(settings)
    in_main = threading.current_thread() is threading.main_thread()
    asked: list[bool] = []

    def stop(*_: object) -> None:
        asked.append(True)
        proc.terminate()

    previous = signal.signal(signal.SIGTERM, stop) if in_main else None
    try:
        code = proc.wait()
        if code < 0:
            # uvicorn ends by re-raising the signal it stopped on: a stop we asked for is
            # a clean stop; any other signal is reported as a shell would (128 + N).
            return 0 if asked and code == -signal.SIGTERM else 128 - code
        return code
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reached Streamlit too; make sure, then give it time to stop.
        stop_process(proc, 10)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
