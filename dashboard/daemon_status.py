"""The daemon's status file, as the dashboard reads it (never the daemon's code)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A heartbeat older than this means the daemon is gone (it beats every few seconds).
STALE_SECONDS = 60.0

FIELDS = (
    "state",
    "heartbeat",
    "pid",
    "queue",
    "throughput",
    "throttled",
    "temperature",
    "last_reconcile",
    "message",
    "encoded_total",
    "images",
    "pairs",
)


@dataclass(frozen=True)
class DaemonStatus:
    running: bool
    # Why it is not running, or how fresh the heartbeat is.
    summary: str
    fields: dict[str, Any] = field(default_factory=dict)


def read_status(path: Path, now: float | None = None) -> DaemonStatus:
    now = time.time() if now is None else now
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return DaemonStatus(False, f"daemon not running (no status file at {path})")
    except OSError as exc:
        return DaemonStatus(False, f"daemon not running (cannot read {path}: {exc})")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return DaemonStatus(False, f"daemon status unreadable ({path}: {exc})")
    if not isinstance(data, dict):
        return DaemonStatus(False, f"daemon status unreadable ({path}: not an object)")
    try:
        age = now - float(data.get("heartbeat"))
    except (TypeError, ValueError):
        return DaemonStatus(False, "daemon not running (status file has no heartbeat)", data)
    if age > STALE_SECONDS:
        return DaemonStatus(False, f"daemon not running (last heartbeat {age:.0f} s ago)", data)
    return DaemonStatus(True, f"daemon running (heartbeat {max(age, 0):.0f} s ago)", data)
