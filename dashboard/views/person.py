"""A person's page: every image of one class in a grid, and the pairs that involve it,
to spot the stranger in a folder. Bookmarkable: /person?name=<class>."""

from __future__ import annotations

from collections import Counter

import streamlit as st

from daemon.common import humanize
from dashboard import ui
from dashboard.settings import DashboardSettings, current
from store.queries import person as person_page
from store.vocab import Status

GRID_COLUMNS = 6
GRID_PAGE = 48
THUMB_SIDE = 200
CLASSES_SHOWN = 200
GROUPS_SHOWN = 200


def pager(label: str, total: int, size: int, key: str) -> int:
    """ "showing 1–200 of 11,897" with a page number to jump to; returns the offset."""
    pages = max(1, -(-total // size))
    page = 1
    if pages > 1:
        page = int(
            st.number_input(
                f"page (of {pages:,})",
                min_value=1,
                max_value=pages,
                step=1,
                key=key,
                help="type a page number and press Enter",
            )
        )
    offset = (min(page, pages) - 1) * size
    if total:
        st.caption(f"{label}: showing {offset + 1:,}–{min(offset + size, total):,} of {total:,}")
    return offset


def _choose(settings: DashboardSettings) -> str | None:
    """The class to show: from the URL, or typed. The search runs in the store over every
    folder (no cap on what can be found, one page of names sent to the browser), as
    people type names: any case, any Unicode form, full- or half-width, any spaces."""
    asked = st.query_params.get("name")
    search = st.text_input(
        "find a class (type part of its name, press Enter)",
        key="person_search",
        help="searches every folder's name, any part, any case; full-width and half-width "
        "forms, Unicode forms (NFC, NFD) and spaces as typed all find it",
    )
    found = ui.query(
        settings,
        lambda con: (
            person_page.find_classes(con, search, CLASSES_SHOWN),
            asked,
            person_page.folders_named(con, asked) if asked else [],
        ),
        keep="person_classes",
    )
    if found is None:
        return asked
    (names_counts, total), looked_up, named = found
    if looked_up != asked:
        # What was loaded before stands in (the store is busy): it looked up another
        # name; take this one as it is until the store can say.
        named = [asked] if asked else []
    counts = dict(names_counts)
    names = list(counts)
    if search.strip() and not names:
        # Nothing matches: say so, never go on showing the folder shown before.
        st.info(ui.md(f"No folder matches “{search.strip()}”."))
        return None
    if total > len(names):
        st.caption(
            f"showing 1–{len(names):,} of {total:,} classes: type more of the name to narrow"
        )
    wanted = asked
    if asked and not named and not search.strip():
        # A bookmark or link to a folder that is not there (renamed, merged, mistyped):
        # said, never an empty folder of "0 images".
        st.warning(ui.md(f"no such folder: {asked}. Type part of a name to find one."))
        return None
    if named and asked not in named:
        wanted = named[0]  # the same name in another Unicode form
    if search.strip() and st.session_state.get("person_search_seen") != search:
        # A new search opens its best match (the exact name when there is one).
        st.session_state["person_search_seen"] = search
        wanted = names[0]
    if wanted and wanted not in counts and wanted in named:
        # Opened from another page or a bookmark: keep it selectable whatever the search.
        names.insert(0, wanted)
    if not names:
        st.write("No class matches.")
        return None
    forms = Counter(person_page.nfc(n) for n in names)

    def label(n: str) -> str:
        size = f" ({humanize.count(counts[n], 'image')})" if n in counts else ""
        if forms[person_page.nfc(n)] > 1:
            # Two folders whose names look alike: one name in two Unicode forms.
            size += f" · Unicode form {person_page.unicode_form(n)}"
        return f"{n}{size}"

    chosen = st.selectbox(
        "class",
        names,
        index=names.index(wanted) if wanted in names else 0,
        format_func=label,
    )
    if chosen != st.query_params.get("name"):
        st.query_params["name"] = chosen
    return chosen


def render(settings: DashboardSettings) -> None:
    st.header("Person")
    klass = _choose(settings)
    if klass is None:
        return
    if st.session_state.get("person_shown") != klass:
        st.session_state["person_shown"] = klass
        for key in ("person_grid_page", "person_pair_page"):
            st.session_state.pop(key, None)
    st.markdown(f"## {ui.md(klass)}\n[image search for this name ↗]({ui.search_url(klass)})")

    total = ui.query(settings, lambda con: person_page.class_images(con, klass, 0)[1])
    if total is None:
        return
    offset = pager("images", total, GRID_PAGE, "person_grid_page")
    grid = ui.query(
        settings, lambda con: person_page.class_images(con, klass, GRID_PAGE, offset)[0]
    )
    st.caption(humanize.count(total, "image"))
    for start in range(0, len(grid or []), GRID_COLUMNS):
        row = (grid or [])[start : start + GRID_COLUMNS]
        for col, image in zip(st.columns(GRID_COLUMNS), row, strict=False):
            with col:
                status = "" if image.status in (None, Status.OK) else f" · {image.status}"
                ui.show_image(
                    settings, image, THUMB_SIDE, caption=f"{image.name}{status}", face=True
                )

    counted = ui.query(settings, lambda con: person_page.class_pair_groups(con, klass, 0))
    if counted is None:
        return
    _, groups_total, pair_total = counted
    st.subheader(f"Pairs involving {ui.md(klass)} ({pair_total:,})")
    if not pair_total:
        st.write("No pair involves this class.")
        return
    group_offset = pager("rows", groups_total, GROUPS_SHOWN, "person_pair_page")
    loaded = ui.query(
        settings,
        lambda con: person_page.class_pair_groups(con, klass, GROUPS_SHOWN, group_offset)[0],
    )
    rows = [
        {
            "best score": round(g.best_score, 4),
            "this image": g.image.rsplit("/", 1)[-1],
            "matches": f"{g.matches} image{'s' if g.matches != 1 else ''} of {g.other_class}",
            "decided": f"{g.decided} of {g.matches}",
        }
        for g in loaded or []
    ]
    st.dataframe(rows, hide_index=True, width="stretch")
    if st.button("review these on the Pairs page", key="person-review"):
        st.session_state["f_search"] = klass
        st.session_state["f_state"] = "unreviewed"
        st.switch_page("views/pairs.py")


if __name__ == "__main__":
    render(current())
