"""facelint's review dashboard: `streamlit run dashboard/app.py -- --db X --root Y ...`.

Settings come only from the arguments after `--`: facelint's one settings model
(dashboard/settings.py, daemon/config.py). Each page opens
the store for one query and closes it again (dashboard/db.py). Pages are `st.navigation`
pages with their own URLs (/ the review queue, /pairs, /person?name=..., /problems,
/search, /status, /actions), so a reviewer can bookmark one.
"""

from __future__ import annotations

import streamlit as st

from dashboard import actions, ui
from dashboard.settings import DashboardSettings, SettingsError, current

PAGES = [
    st.Page("views/mistakes.py", title="Review", icon=":material/checklist:", default=True),
    st.Page("views/pairs.py", title="Pairs", icon=":material/group:", url_path="pairs"),
    st.Page("views/person.py", title="Person", icon=":material/person:"),
    st.Page("views/problems.py", title="Problems", icon=":material/warning:"),
    st.Page("views/search.py", title="Search by photo", icon=":material/image_search:"),
    st.Page("views/status.py", title="Status", icon=":material/monitoring:"),
    st.Page("views/log.py", title="File actions", icon=":material/folder:", url_path="actions"),
]

# Widget values that must outlive a visit to another page (Streamlit forgets the state
# of widgets a run did not draw). The widgets take their defaults from Session State
# only, so re-assigning here raises no "default value and Session State" warning.
_KEPT = ("f_score", "f_search", "f_state", "f_size", "person_search", "m_state", "m_kinds")


def _settings() -> DashboardSettings | None:
    try:
        return current()
    except (SettingsError, SystemExit) as exc:
        st.error(ui.md(f"dashboard arguments: {exc}"))
        return None


def main() -> None:
    st.set_page_config(page_title="facelint review", page_icon="🧑", layout="wide")
    settings = _settings()
    if settings is None:
        return
    for key in _KEPT:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    page = st.navigation(PAGES)
    with st.sidebar:
        st.title("facelint")
        if not settings.allow_file_actions:
            st.caption("read-only for files (no --allow-file-actions)")
    if not settings.root.is_dir():
        st.error(ui.md(f"the data root {settings.root} is not a folder: no image can be shown"))
    # The outcome of the last file action or undo (the Pairs queue shows its own).
    ui.show_flash(lambda action_id: ui.act(actions.undo, settings, action_id))
    page.run()


if __name__ == "__main__":
    main()
