"""The problems page: images the encoder could not use or doubted, and hub images."""

from __future__ import annotations

import streamlit as st

from dashboard import actions, ui
from dashboard.settings import DashboardSettings, current
from dashboard.views.person import pager
from store.queries import images as image_rows
from store.queries import problems as problems_page
from store.vocab import USABLE, Status

COLUMNS = 4
PAGE = 40
THUMB_SIDE = 240
HUBS_PAGE = 40

EXPLAIN = {
    Status.NO_FACE: "no face found: not usable for training as a face",
    Status.MULTI_FACE: "several faces: the boxed one stands for the image",
    Status.UNREADABLE: "the file cannot be read or decoded",
    Status.ERROR: "the encoder failed on it (retried on the next scan)",
    "whole_image": "no face box found: the whole picture was encoded as the face",
}
FIX = {
    "whole_image": "crop it to the face, or remove it from the data set",
    Status.NO_FACE: "remove it from the data set, or replace it with a photo showing the face",
    Status.MULTI_FACE: "check the boxed face is this person; if not, crop the photo to them",
}


def _faces(settings: DashboardSettings, image: image_rows.ImageInfo) -> None:
    """The faces detected in a multi-face image, the chosen one marked, and a button to
    let another one stand for the image."""
    faces = ui.query(settings, lambda con: image_rows.detected_faces(con, image))
    if not faces or len(faces) < 2:
        return
    cols = st.columns(min(len(faces), 4))
    for col, face in zip(cols, faces, strict=False):
        with col:
            ui.show_image(
                settings,
                image,
                80,
                caption=f"face {face.index + 1}{' (used)' if face.chosen else ''}",
                face=True,
                box=face.box,
            )
            if not face.chosen and st.button(
                "use this face",
                key=f"pick-{image.id}-{face.index}",
                help="this face is the folder's person: compare the image with it",
            ):
                ui.act(actions.pick_face, settings, image, face.index)
                st.rerun()


def _grid(settings: DashboardSettings, items: list[image_rows.ImageInfo], hubs: bool) -> None:
    for start in range(0, len(items), COLUMNS):
        for col, image in zip(st.columns(COLUMNS), items[start : start + COLUMNS], strict=False):
            with col:
                st.markdown(f"**{ui.md(image.klass)}** / {ui.md(image.name)}")
                ui.show_image(settings, image, THUMB_SIDE)
                if hubs:
                    st.caption(f"matches {image.candidates} images above the threshold")
                    continue
                status = image.status or ""
                if image.whole_image and status in USABLE:
                    status = "whole_image"
                st.caption(ui.md(f"{status}: {image.message or EXPLAIN.get(status, '')}"))
                if status in FIX:
                    st.caption(f"fix: {FIX[status]}")
                if status == Status.MULTI_FACE:
                    _faces(settings, image)


def render(settings: DashboardSettings) -> None:
    st.header("Problems")
    statuses = st.multiselect(
        "show images that are",
        list(problems_page.PROBLEM_STATUSES),
        default=list(problems_page.PROBLEM_STATUSES),
        key="problem_statuses",
        help="whole_image: encoded as a whole picture because no face box was found",
    )
    counted = ui.query(settings, lambda con: problems_page.problems(con, statuses, 0)[1])
    if counted is None:
        return
    if counted == 0:
        st.success("No image with these problems.")
    else:
        offset = pager("problem images", counted, PAGE, "problems_page")
        found = ui.query(
            settings, lambda con: problems_page.problems(con, statuses, PAGE, offset)[0]
        )
        st.caption(f"{counted:,} images")
        _grid(settings, found or [], hubs=False)

    st.subheader("Hubs")
    st.caption(
        "Images that match more others than the store keeps pairs for: often blurry, "
        "tiny or generic faces, or a face that is not the person's. Only their best pairs "
        "are stored."
    )
    hub_total = ui.query(settings, lambda con: problems_page.hub_images(con, 0)[1])
    if not hub_total:
        st.write("No hub images.")
        return
    hub_offset = pager("hubs", hub_total, HUBS_PAGE, "hubs_page")
    hubs = ui.query(settings, lambda con: problems_page.hub_images(con, HUBS_PAGE, hub_offset)[0])
    _grid(settings, hubs or [], hubs=True)


if __name__ == "__main__":
    render(current())
