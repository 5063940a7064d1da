"""`facelint up`: the daemon in the foreground with the dashboard beside it."""

from __future__ import annotations

import logging

from daemon.config import Settings
from daemon.launch import start_dashboard, stop_process
from daemon.service import DaemonLock, daemon_lock, run_service

log = logging.getLogger("facelint.up")


def run_up(settings: Settings) -> int:
    # The lock first: a second `up` on the same store must not even start a dashboard.
    with daemon_lock(settings) as lock:
        return _run_up(settings, lock)


def _run_up(settings: Settings, lock: DaemonLock) -> int:
    settings.root.mkdir(parents=True, exist_ok=True)
    # Dies with this process however it ends; a SIGTERM, SIGINT or SIGHUP stops the
    # daemon cleanly and the `finally` below stops the dashboard.
    dashboard = start_dashboard(settings)
    log.info(
        "dashboard on http://%s:%d/ ; daemon watching %s, store %s",
        settings.address,
        settings.port,
        settings.root,
        settings.db,
    )
    try:
        code = run_service(settings, lock)
    finally:
        stop_process(dashboard, 15)
    return code
