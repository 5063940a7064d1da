"""The status page: the daemon's status file, the store's totals and calibration."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from dashboard import ui
from dashboard.daemon_status import read_status
from dashboard.settings import DashboardSettings
from store import review


def _when(value: object) -> str:
    try:
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "—" if value in (None, "") else str(value)


def _daemon(settings: DashboardSettings) -> None:
    st.subheader("Daemon")
    status = read_status(settings.status_file)
    (st.success if status.running else st.error)(status.summary)
    f = status.fields
    if not f:
        st.caption(f"status file: {settings.status_file}")
        return
    cols = st.columns(4)
    cols[0].metric("state", str(f.get("state", "—")))
    cols[1].metric("queue", str(f.get("queue", "—")))
    cols[2].metric("throughput (images/s)", str(f.get("throughput", "—")))
    throttled = f.get("throttled")
    temp = f.get("temperature")
    cols[3].metric(
        "throttled" if throttled else "temperature",
        "yes" if throttled else ("no sensor" if temp is None else f"{temp} °C"),
    )
    st.table(
        {
            "heartbeat": [_when(f.get("heartbeat"))],
            "pid": [str(f.get("pid", "—"))],
            "last reconcile": [_when(f.get("last_reconcile"))],
            "encoded in all": [str(f.get("encoded_total", "—"))],
            "images": [str(f.get("images", "—"))],
            "pairs": [str(f.get("pairs", "—"))],
            "message": [str(f.get("message") or "")],
        }
    )
    st.caption(f"status file: {settings.status_file}")


def _store(settings: DashboardSettings) -> None:
    st.subheader("Store")
    totals = ui.query(settings, review.totals)
    if totals is None:
        return
    cols = st.columns(4)
    cols[0].metric("images", f"{totals['images']:,}")
    cols[1].metric("classes", f"{totals['classes']:,}")
    cols[2].metric("pairs", f"{totals['pairs']:,}")
    cols[3].metric("unreviewed pairs", f"{totals['unreviewed_pairs']:,}")
    cols = st.columns(4)
    cols[0].metric("hubs", f"{totals['hubs']:,}")
    cols[1].metric("waiting to compare", f"{totals['pending']:,}")
    cols[2].metric("encoded in all", f"{totals['encoded_total']:,}")
    cols[3].metric("decisions", f"{sum(totals['decisions'].values()):,}")
    st.caption(f"model: {totals['model'] or '—'}")
    st.markdown("**Images by status**")
    st.table({k: [v] for k, v in sorted(totals["statuses"].items())})
    if totals["decisions"]:
        st.markdown("**Decisions**")
        st.table({k: [v] for k, v in sorted(totals["decisions"].items())})
    cal = totals["calibration"]
    st.markdown("**Calibration**")
    if cal is None:
        st.write("not calibrated yet (no comparison has run)")
    else:
        st.write(
            f"{cal['kind']}: raw cosine {cal['zero_cos']:.4f} ↦ score 0, "
            f"{cal['anchor_cos']:.4f} ↦ the anchor score; estimated on {cal['images']:,} "
            f"images at {cal['computed_at']}"
        )
    last = totals["last_run"]
    if last:
        st.caption(f"last run: {last['kind']}, finished {last['finished_at']}")


def render(settings: DashboardSettings) -> None:
    st.header("Status")
    _daemon(settings)
    _store(settings)
    st.subheader("This dashboard")
    st.write(
        f"root `{settings.root}` · store `{settings.db}` · reviewer `{settings.user}` · "
        + (
            "file actions **on**"
            if settings.allow_file_actions
            else "file actions **off** (read-only for files)"
        )
    )
