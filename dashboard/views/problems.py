"""The problems page: images the encoder could not use or doubted, and hub images."""

from __future__ import annotations

import streamlit as st

from dashboard import ui
from dashboard.settings import DashboardSettings
from store import review

COLUMNS = 4
PAGE = 40
THUMB_SIDE = 280
HUBS_SHOWN = 40

EXPLAIN = {
    "no_face": "no face found: not usable for training as a face",
    "multi_face": "several faces: the largest one was used",
    "unreadable": "the file cannot be read or decoded",
    "error": "the encoder failed on it (retried on the next scan)",
}


def _page(delta: int) -> None:
    st.session_state["problems_offset"] = max(0, st.session_state.get("problems_offset", 0) + delta)


def _grid(settings: DashboardSettings, items: list[review.ImageInfo], hubs: bool) -> None:
    for start in range(0, len(items), COLUMNS):
        for col, image in zip(st.columns(COLUMNS), items[start : start + COLUMNS], strict=False):
            with col:
                st.markdown(f"**{ui.md(image.klass)}** / {ui.md(image.name)}")
                ui.show_image(settings, image, THUMB_SIDE)
                if hubs:
                    st.caption(f"matches {image.candidates} images above the threshold")
                else:
                    st.caption(f"{image.status}: {image.message or EXPLAIN[image.status]}")


def render(settings: DashboardSettings) -> None:
    st.header("Problems")
    statuses = st.multiselect(
        "show images that are",
        list(review.PROBLEM_STATUSES),
        default=list(review.PROBLEM_STATUSES),
        key="problem_statuses",
    )
    offset = st.session_state.get("problems_offset", 0)

    def load(con):
        found, total = review.problems(con, statuses, PAGE, offset)
        return found, total, review.hub_images(con, HUBS_SHOWN)

    loaded = ui.query(settings, load)
    if loaded is None:
        return
    found, total, hubs = loaded
    if total == 0:
        st.success("No image with these problems.")
    else:
        st.caption(f"{total:,} images · showing {offset + 1}–{offset + len(found)}")
        _grid(settings, found, hubs=False)
        prev_col, next_col = st.columns(2)
        prev_col.button(
            "← previous", key="problems-prev", disabled=offset == 0, on_click=_page, args=(-PAGE,)
        )
        next_col.button(
            "next →",
            key="problems-next",
            disabled=offset + PAGE >= total,
            on_click=_page,
            args=(PAGE,),
        )
    st.subheader("Hubs")
    st.caption(
        "Images that match more others than the store keeps pairs for: often blurry, "
        "tiny or generic faces. Only their best pairs are stored."
    )
    if not hubs:
        st.write("No hub images.")
    else:
        _grid(settings, hubs, hubs=True)
