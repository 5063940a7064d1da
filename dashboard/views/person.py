"""A person's page: every image of one class in a grid, and the pairs that involve it,
to spot the stranger in a folder."""

from __future__ import annotations

import streamlit as st

from dashboard import ui
from dashboard.settings import DashboardSettings
from store import review
from store.review import PairFilter

GRID_COLUMNS = 6
GRID_PAGE = 48
THUMB_SIDE = 220
PAIRS_SHOWN = 200


def _review_on_pairs_page(klass: str) -> None:
    st.session_state["page"] = "Pairs"
    st.session_state["f_search"] = klass
    st.session_state["f_state"] = "unreviewed"


def _grid_page(delta: int) -> None:
    st.session_state["person_offset"] = max(0, st.session_state.get("person_offset", 0) + delta)


def _choose(settings: DashboardSettings) -> str | None:
    search = st.text_input("find a class (name contains)", key="person_search")
    found = ui.query(settings, lambda con: review.class_names(con, search))
    if found is None:
        return None
    names = [name for name, _ in found]
    counts = dict(found)
    current = st.session_state.get("person")
    if current and current not in counts:
        # Opened from another page: keep it selectable whatever the search says.
        names.insert(0, current)
    if not names:
        st.write("No class matches.")
        return None
    if st.session_state.get("person_shown") != current:
        st.session_state["person_offset"] = 0
        st.session_state["person_shown"] = current
    return st.selectbox(
        "class",
        names,
        key="person",
        format_func=lambda n: f"{n} ({counts[n]} images)" if n in counts else n,
    )


def render(settings: DashboardSettings) -> None:
    st.header("Person")
    klass = _choose(settings)
    if klass is None:
        return
    offset = st.session_state.get("person_offset", 0)

    def load(con):
        grid, total = review.class_images(con, klass, GRID_PAGE, offset)
        flt = PairFilter(klass=klass, state="all")
        return grid, total, review.pair_page(con, flt, PAIRS_SHOWN), review.count_pairs(con, flt)

    loaded = ui.query(settings, load)
    if loaded is None:
        return
    grid, total, pairs, pair_total = loaded
    st.markdown(f"## {ui.md(klass)}\n[image search for this name ↗]({ui.search_url(klass)})")
    st.caption(f"{total:,} images · showing {min(offset + 1, total)}–{offset + len(grid)}")
    for start in range(0, len(grid), GRID_COLUMNS):
        for col, image in zip(
            st.columns(GRID_COLUMNS), grid[start : start + GRID_COLUMNS], strict=False
        ):
            with col:
                status = "" if image.status in (None, "ok") else f" · {image.status}"
                ui.show_image(settings, image, THUMB_SIDE, caption=f"{image.name}{status}")
    prev_col, next_col = st.columns(2)
    prev_col.button(
        "← previous images",
        key="person-prev",
        disabled=offset == 0,
        on_click=_grid_page,
        args=(-GRID_PAGE,),
    )
    next_col.button(
        "more images →",
        key="person-next",
        disabled=offset + GRID_PAGE >= total,
        on_click=_grid_page,
        args=(GRID_PAGE,),
    )

    st.subheader(f"Pairs involving {klass} ({pair_total:,})")
    if not pairs:
        st.write("No pair involves this class.")
        return
    rows = []
    for p in pairs:
        mine, other = (p.a, p.b) if p.a.klass == klass else (p.b, p.a)
        rows.append(
            {
                "score": round(p.score, 4),
                "this image": mine.name,
                "other class": other.klass,
                "other image": other.name,
                "decision": p.decision or "",
            }
        )
    st.dataframe(rows, hide_index=True, width="stretch")
    st.button(
        "review these on the Pairs page",
        key="person-review",
        on_click=_review_on_pairs_page,
        args=(klass,),
    )
