"""facelint's review dashboard: `streamlit run dashboard/app.py -- --db X --root Y ...`.

Settings come only from the arguments after `--` (dashboard/settings.py). Each page opens
the store for one query and closes it again (dashboard/db.py).
"""

from __future__ import annotations

import sys

import streamlit as st

from dashboard import actions, ui
from dashboard.settings import DashboardSettings, SettingsError, parse_args
from dashboard.views import log, pairs, person, problems, status

PAGES = {
    "Pairs": pairs.render,
    "Person": person.render,
    "Problems": problems.render,
    "Status": status.render,
    "File actions": log.render,
}

# Widget values that must outlive a visit to another page (Streamlit forgets the state
# of widgets a run did not draw).
_KEPT = ("f_score", "f_search", "f_state", "f_size", "person", "person_search")


def _settings() -> DashboardSettings | None:
    try:
        return parse_args(sys.argv[1:])
    except (SettingsError, SystemExit) as exc:
        st.error(f"dashboard arguments: {exc}")
        return None


def main() -> None:
    st.set_page_config(page_title="facelint review", page_icon="🧑", layout="wide")
    settings = _settings()
    if settings is None:
        return
    for key in _KEPT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    with st.sidebar:
        st.title("facelint")
        page = st.radio("page", list(PAGES), key="page")
        if not settings.allow_file_actions:
            st.caption("read-only for files (no --allow-file-actions)")
    if not settings.root.is_dir():
        st.error(f"the data root {settings.root} is not a folder: no image can be shown")
    ui.show_flash(lambda action_id: ui.act(actions.undo, settings, action_id))
    PAGES[page](settings)


if __name__ == "__main__":
    main()
