"""The status page: the daemon's status file, the store's totals and calibration."""

from __future__ import annotations

import streamlit as st

from daemon.common import humanize
from daemon.common.statusfile import read_status_file
from dashboard import ui
from dashboard.settings import DashboardSettings, current
from store.queries import status as status_page

REFRESH_SECONDS = 5


def _daemon(settings: DashboardSettings) -> None:
    st.subheader("Daemon")
    status = read_status_file(settings.status_path())
    # The status file is written by the daemon but readable by anyone who can write it:
    # every value from it is shown as typed (ui.md), like names from the store.
    (st.success if status.running else st.error)(ui.md(status.summary))
    f = status.fields
    if not f:
        st.caption(ui.md(f"status file: {settings.status_path()}"))
        return
    cols = st.columns(4)
    cols[0].metric("state", ui.md(f.get("state", "—")))
    cols[1].metric("queue", ui.md(f.get("queue", "—")))
    cols[2].metric("throughput (images/s)", ui.md(f.get("throughput", "—")))
    throttled = f.get("throttled")
    temp = f.get("temperature")
    cols[3].metric(
        "throttled" if throttled else "temperature",
        "yes" if throttled else ("no sensor" if temp is None else ui.md(f"{temp} °C")),
    )
    st.table(
        {
            "heartbeat": [ui.md(humanize.moment(f.get("heartbeat")))],
            "pid": [ui.md(f.get("pid", "—"))],
            "last reconcile": [ui.md(humanize.moment(f.get("last_reconcile")))],
            "encoded in all": [ui.md(f.get("encoded_total", "—"))],
            "images": [ui.md(f.get("images", "—"))],
            "pairs": [ui.md(f.get("pairs", "—"))],
            "message": [ui.md(f.get("message") or "")],
        }
    )
    st.caption(ui.md(f"status file: {settings.status_path()}"))


def _store(settings: DashboardSettings) -> None:
    st.subheader("Store")
    totals = ui.query(settings, status_page.totals)
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
    st.caption(ui.md(f"model: {totals['model'] or '—'}"))
    st.markdown("**Images by status**")
    st.table({ui.md(k): [v] for k, v in sorted(totals["statuses"].items())})
    if totals["decisions"]:
        st.markdown("**Decisions**")
        st.table({ui.md(k): [v] for k, v in sorted(totals["decisions"].items())})
    cal = totals["calibration"]
    st.markdown("**Calibration**")
    if cal is None:
        st.write("not calibrated yet (no comparison has run)")
    else:
        st.write(
            f"{ui.md(cal['kind'])}: raw cosine {cal['zero_cos']:.4f} ↦ score 0, "
            f"{cal['anchor_cos']:.4f} ↦ the anchor score; estimated on {cal['images']:,} "
            f"images at {ui.md(humanize.moment(cal['computed_at']))}"
        )
        false_rate, recall = cal.get("false_matches_per_image"), cal.get("recall")
        cols = st.columns(3)
        cols[0].metric(
            f"false matches per image at {cal['threshold']:g}",
            "—" if false_rate is None else f"{false_rate:.2g}",
            help="expected different-people matches per image at or above the threshold, "
            "from the fitted tail of cross-folder cosines",
        )
        cols[1].metric(
            "estimated recall",
            "—" if recall is None else f"{recall:.0%}",
            help="share of same-folder pairs (one person, mostly) at or above the threshold",
        )
        cols[2].metric("open suggestions", f"{totals.get('open_suggestions', 0):,}")
    last = totals["last_run"]
    if last:
        finished = humanize.moment(last["finished_at"])
        st.caption(ui.md(f"last run: {last['kind']}, finished {finished}"))


def live_line(settings: DashboardSettings) -> str:
    """ "encoding 1,234 of 5,000, about 2 min left" from the status file's `progress`
    ({stage, done, total, rate, eta_s}), when the daemon is running and writes one; the
    daemon's state otherwise; "" when it is not running."""
    status = read_status_file(settings.status_path())
    if not status.running:
        return ""
    progress = status.progress()
    if progress is not None:
        return humanize.progress(progress.stage, progress.done, progress.total, progress.eta_s)
    state = str(status.fields.get("state") or "running")
    message = str(status.fields.get("message") or "")
    return f"daemon {state}" + (f": {message}" if message else "")


def _histogram(settings: DashboardSettings) -> None:
    st.subheader("Scores")
    rows = ui.query(settings, status_page.score_histogram)
    if not rows:
        st.write("No pair stored yet.")
        return
    st.caption("stored pairs by score; decided pairs coloured by what the reviewer said")
    st.bar_chart(
        {
            # Each bin by its lowest score, rounded: a float's repr on the axis reads as
            # noise ("0.43333334").
            "score": [f"{r[0]:.2f}" for r in rows],
            "decision": [r[1] for r in rows],
            "pairs": [r[2] for r in rows],
        },
        x="score",
        y="pairs",
        color="decision",
        stack=True,
        height=260,
    )


def render(settings: DashboardSettings) -> None:
    st.header("Status")

    # The page refreshes itself: a reviewer leaves it open while the daemon works.
    @st.fragment(run_every=REFRESH_SECONDS)
    def live() -> None:
        line = live_line(settings)
        if line:
            st.info(ui.md(line))
        _daemon(settings)
        _store(settings)

    live()
    _histogram(settings)
    st.subheader("This dashboard")
    st.write(
        f"root {ui.md(settings.root)} · store {ui.md(settings.db)} · reviewer "
        f"{ui.md(settings.user)} · "
        + (
            "file actions **on**"
            if settings.allow_file_actions
            else "file actions **off** (read-only for files)"
        )
    )


if __name__ == "__main__":
    render(current())
