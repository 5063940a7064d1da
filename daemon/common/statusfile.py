"""The daemon's status file: written by the daemon, read by `facelint status` and the
dashboard, with one rule for when the daemon counts as gone.

A JSON object beside the store, replaced atomically (a temp file, then a rename), holds
the live figures: state, heartbeat (Unix seconds), pid, queue, throughput, temperature,
last_reconcile (ISO-8601), message, alert, progress ({stage, done, total, rate, eta_s})
and the store's last totals. Readers need no lock: a reader sees the old file or the new
one, never half of one. Standard library only: the dashboard imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.common.humanize import epoch

# A heartbeat this old or older means the daemon is gone, or cannot write this file: it
# beats every 2 s (daemon/service.py HEARTBEAT_SECONDS) from a thread of its own, so ten
# missed beats are not a slow one. A failed write leaves the old file as it was, so its
# last state ("idle") is shown for this long at most, never for as long as writes fail.
STALE_SECONDS = 20.0


def write_status(path: Path, status: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(status, fh, ensure_ascii=False, default=str)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int
    eta_s: float | None


@dataclass(frozen=True)
class DaemonStatus:
    running: bool
    # Why it is not running, or how fresh the heartbeat is.
    summary: str
    # The file's object as written ({} when there is none to read).
    fields: dict[str, Any] = field(default_factory=dict)
    # Seconds since the heartbeat; None without a heartbeat.
    age: float | None = None

    def progress(self) -> Progress | None:
        """The work in hand, while the daemon runs and reports some."""
        return parse_progress(self.fields.get("progress")) if self.running else None


def parse_progress(block: object) -> Progress | None:
    """The file's `progress` block; None without one, or when malformed (no progress,
    not an error) or empty (nothing to do)."""
    if not isinstance(block, dict):
        return None
    try:
        done, total = int(block.get("done") or 0), int(block.get("total") or 0)
    except (TypeError, ValueError):
        return None
    if total <= 0:
        return None
    try:
        eta: float | None = float(block["eta_s"])
    except (KeyError, TypeError, ValueError):
        eta = None
    if eta is not None and not eta >= 0:
        eta = None  # negative or NaN: no estimate
    return Progress(str(block.get("stage") or "working"), done, total, eta)


def read_status_file(path: Path, now: float | None = None) -> DaemonStatus:
    """The status file at `path`, and whether its daemon runs: it does while the file
    holds a heartbeat younger than STALE_SECONDS."""
    now = time.time() if now is None else now
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return DaemonStatus(False, f"daemon not running (no status file at {path})")
    except UnicodeDecodeError as exc:
        return DaemonStatus(False, f"daemon status unreadable ({path}: {exc})")
    except OSError as exc:
        return DaemonStatus(False, f"daemon not running (cannot read {path}: {exc})")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        return DaemonStatus(False, f"daemon status unreadable ({path}: {exc})")
    if not isinstance(data, dict):
        return DaemonStatus(False, f"daemon status unreadable ({path}: not an object)")
    heartbeat = data.get("heartbeat")
    beat = None if isinstance(heartbeat, str) else epoch(heartbeat)
    if beat is None:
        return DaemonStatus(False, "daemon not running (status file has no heartbeat)", data)
    age = now - beat
    if age >= STALE_SECONDS:
        return DaemonStatus(
            False, f"daemon not running (last heartbeat {age:.0f} s ago)", data, age
        )
    return DaemonStatus(True, f"daemon running (heartbeat {max(age, 0):.0f} s ago)", data, age)
