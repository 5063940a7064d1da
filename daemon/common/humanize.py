"""Figures in words for people: durations, ages, moments, counts, rates, time left.

One spelling for `facelint status` and the dashboard's status page. Standard library
only: the dashboard imports it on every page.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

NONE = "—"


def duration(seconds: float) -> str:
    """ "45 s", "12 min", "3.5 h", "2.1 days": whole units up to 90 of them, then tenths."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def epoch(value: object) -> float | None:
    """A moment as Unix seconds: the status file holds numbers (heartbeat) and ISO-8601
    text (last_reconcile); a time without a zone is UTC, as the store's are. None when it
    is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) else None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def age(value: object, now: float) -> str:
    """ "3 min ago" for a moment (see `epoch`), "never" without one."""
    then = epoch(value)
    return "never" if then is None else f"{duration(now - then)} ago"


def moment(value: object) -> str:
    """ "2024-05-01 10:00:00 UTC"; "—" without a value, the value itself when it is not a
    moment (a reader still sees what the file says)."""
    then = epoch(value)
    if then is not None:
        try:
            return datetime.fromtimestamp(then, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            pass
    return NONE if value in (None, "") else str(value)


def count(value: object, noun: str | None = None, plural: str | None = None) -> str:
    """ "12,345"; with a noun, "1 image" / "2 images" ("—" when unknown). Text that is not
    a whole number is shown as it is."""
    if value is None:
        return NONE
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    text = f"{value:,}"
    if noun is None:
        return text
    return f"{text} {noun if value == 1 else (plural or noun + 's')}"


def rate(per_second: object, unit: str = "images") -> str:
    """ "12.3 images/s"; "—" when unknown."""
    try:
        value = float(per_second)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NONE
    return f"{value:.1f} {unit}/s"


def time_left(seconds: float) -> str:
    """ "about 2 min left": never "0 s" while work remains."""
    return f"about {duration(max(1.0, float(seconds)))} left"


def progress(stage: str, done: int, total: int, eta_s: float | None) -> str:
    """ "encoding 1,234 of 5,000, about 2 min left" (without the time when unknown)."""
    line = f"{stage} {count(done)} of {count(total)}"
    return line if eta_s is None else f"{line}, {time_left(eta_s)}"


def rate_and_eta(done: int, total: int, elapsed: float) -> tuple[float, float | None]:
    """Items per second so far, and the seconds left at that rate (None before there is
    a rate)."""
    per_second = done / elapsed if elapsed > 0 else 0.0
    left = (total - done) / per_second if per_second > 0 else None
    return per_second, left
