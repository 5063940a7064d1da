"""What `facelint status` reports: the daemon's status file merged with the store's totals.

The file (daemon/common/statusfile.py) holds the live figures; totals that must survive
restarts (images, pairs, encoded_total) live in the store. `read_status` merges both and
falls back to the file's last copy of them while another process holds the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import duckdb

from daemon.common.statusfile import DaemonStatus, read_status_file
from daemon.config import Settings

log = logging.getLogger("facelint.status")


def _not_running(status: DaemonStatus) -> str:
    """Why the file's state is not shown: its daemon said it stopped, or the file went
    stale (the daemon died, hangs, or cannot write it; its log says which)."""
    live = status.fields
    if live.get("state") == "stopped" or status.age is None:
        return status.summary
    return (
        f"{status.summary}: the status file says {live.get('state', '?')!r} but was not "
        "written since, so that is no longer known: the daemon died, hangs, or cannot "
        "write its status file (see its log)"
    )


def read_status(
    settings: Settings,
    now: float | None = None,
    on_wait: Callable[[float, str], None] | None = None,
) -> dict[str, Any]:
    """What `facelint status` prints: live state plus the store's totals. The store is
    read with `read_wait` (another process's lock is waited for that long, `on_wait`
    told at each retry); past it, the status file's last totals stand in."""
    from store.connection import StoreBusy, StoreMissing
    from store.db import Store
    from store.queries.status import summary

    now = time.time() if now is None else now
    status = read_status_file(settings.status_path(), now)
    live, running = status.fields, status.running
    out: dict[str, Any] = {
        "state": live.get("state", "stopped") if running else "daemon not running",
        "heartbeat": live.get("heartbeat"),
        "heartbeat_age": None if status.age is None else round(status.age, 1),
        "running": running,
        "queue": live.get("queue", 0) if running else 0,
        "throughput": live.get("throughput"),
        "temperature": live.get("temperature"),
        "throttled": live.get("throttled", False) if running else False,
        "last_reconcile": live.get("last_reconcile"),
        "message": live.get("message", "") if running else _not_running(status),
        "progress": live.get("progress") if running else None,
        # Kept until the daemon restarts (a lost store): what the user must not miss.
        "alert": live.get("alert", ""),
        # Changed paths a store failure holds back (the daemon retries them).
        "waiting_for_store": live.get("waiting_for_store", 0) if running else 0,
        # The longest the daemon waited for another process's lock since it started.
        "longest_store_wait": live.get("longest_store_wait"),
        "pid": live.get("pid"),
        "store": str(settings.db),
    }
    try:
        from daemon.encoders import registry
        from store import embeddings

        configured = registry.model_id(settings)
        store = Store(settings.db, lock_timeout=settings.read_wait, on_wait=on_wait)
        started = time.monotonic()
        with store.reading() as con:
            opened = time.monotonic() - started
            totals = summary(con, settings.threshold)
            if totals.get("model") not in (None, configured):
                done, total = embeddings.count_to_encode(con, configured)
                # The store serves its model until the configured one has encoded all.
                totals["switch"] = {
                    "serving": totals["model"],
                    "to": configured,
                    "encoded": done,
                    "total": total,
                }
        out["store_readable"] = True
        # `facelint -v status` says where the time went (benchmarks/bench_waits.py).
        log.debug(
            "the store opened in %.2f s (any wait for its lock included), its totals read "
            "in %.2f s",
            opened,
            time.monotonic() - started,
        )
    except (StoreBusy, StoreMissing) as exc:
        totals = {k: live.get(k) for k in ("images", "pairs", "encoded_total")}
        out["store_readable"] = False
        out["store_message"] = str(exc)
    except (duckdb.Error, OSError) as exc:
        # Corrupt, foreign, unreadable: the daemon's own state (from its file) still
        # shows, with the last totals it wrote, and the store's trouble is said.
        totals = {k: live.get(k) for k in ("images", "pairs", "encoded_total")}
        out["store_readable"] = False
        out["store_error"] = True
        out["store_message"] = f"the store {settings.db} cannot be read: " + " ".join(
            str(exc).split()
        )
    # A scan, or a daemon that has stopped since, reconciled too: the store's runs say when.
    stored_reconcile = totals.pop("last_reconcile", None)
    out.update({k: v for k, v in totals.items()})
    if not out.get("last_reconcile"):
        out["last_reconcile"] = stored_reconcile
    for key in ("images", "pairs", "encoded_total"):
        out.setdefault(key, None)
    return out
