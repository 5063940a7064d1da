"""`facelint up`: the daemon in the foreground with the dashboard beside it."""

from __future__ import annotations

import logging
import subprocess

from daemon.config import Settings
from daemon.launch import dashboard_command, stop_process
from daemon.service import daemon_lock, run_service

log = logging.getLogger("facelint.up")


def run_up(settings: Settings) -> int:
    # The lock first: a second `up` on the same store must not even start a dashboard.
    with daemon_lock(settings):
        return _run_up(settings)


def _run_up(settings: Settings) -> int:
    settings.root.mkdir(parents=True, exist_ok=True)
    dashboard = subprocess.Popen(dashboard_command(settings))
    log.info(
        "dashboard on http://%s:%d/ ; daemon watching %s, store %s",
        settings.address,
        settings.port,
        settings.root,
        settings.db,
    )
    try:
        code = run_service(settings)
    finally:
        stop_process(dashboard, 15)
    return code
