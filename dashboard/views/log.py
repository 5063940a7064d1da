"""The file-action log: every move and removal made from the dashboard, with undo."""

from __future__ import annotations

import streamlit as st

from dashboard import actions, ui
from dashboard.settings import DashboardSettings, current
from dashboard.views.person import pager
from store import actions as action_log

SHOWN = 200
UNDO_BUTTONS = 50


def undo(settings: DashboardSettings, action_id: int) -> None:
    ui.act(actions.undo, settings, action_id)


def render(settings: DashboardSettings) -> None:
    st.header("File actions")
    total = ui.query(settings, action_log.count_actions)
    if total is None:
        return
    offset = pager("file actions", total, SHOWN, "actions_page")
    rows = ui.query(settings, lambda con: action_log.recent_actions(con, SHOWN, offset))
    if rows is None:
        return
    if not settings.allow_file_actions:
        st.info("File actions are off: this log can be read, not undone.")
    if not rows:
        st.write("No file action yet.")
        return
    if settings.allow_file_actions:
        for row in [r for r in rows if r.undoable][:UNDO_BUTTONS]:
            text, button = st.columns([5, 1])
            text.markdown(
                ui.md(f"#{row.id} {row.action}: {row.src} → {row.dst}")
                + f" ({ui.md(row.who or '')}, {row.acted_at:%Y-%m-%d %H:%M})"
            )
            button.button("undo", key=f"undo-{row.id}", on_click=undo, args=(settings, row.id))
    st.dataframe(
        [
            {
                "#": r.id,
                "when": str(r.acted_at)[:19],
                "who": r.who or "",
                "action": r.action,
                "from": r.src,
                "to": r.dst,
                "undone": "" if r.undone_at is None else str(r.undone_at)[:19],
                "undoes": "" if r.undo_of is None else f"#{r.undo_of}",
            }
            for r in rows
        ],
        hide_index=True,
        width="stretch",
    )


if __name__ == "__main__":
    render(current())
