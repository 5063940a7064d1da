"""Search by photo: upload a photo, see the stored faces nearest to the face in it.

The dashboard loads no model: it asks the running daemon, which has its model loaded,
over the daemon's search socket (daemon/common/searchclient.py); when no daemon answers it
says so and runs `facelint search PHOTO --json` in a subprocess, with this dashboard's
store, and shows what that prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import streamlit as st

from daemon.common import searchclient
from daemon.common.imaging import ImageReadError
from dashboard import images, ui
from dashboard.settings import DashboardSettings, current

COLUMNS = 5
FACE_SIDE = 160
YOUR_PHOTO_SIDE = 160
# Loading the model and encoding one photo takes a few seconds on a busy machine.
TIMEOUT_SECONDS = 120


def run_search(settings: DashboardSettings, photo: Path, n: int) -> dict:
    """What `facelint search PHOTO --json` prints, as a dict; RuntimeError with the
    command's own message when it fails."""
    cmd = [sys.executable, "-m", "daemon.cli", "search", str(photo), "-n", str(n), "--json"]
    cmd += ["--db", str(settings.db)]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, encoding="utf-8"
    )
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1] if lines else f"facelint search exited {done.returncode}")
    return json.loads(done.stdout)


def ask_daemon(settings: DashboardSettings, data: bytes, name: str, n: int) -> dict | None:
    """The running daemon's answer for the photo; None when no daemon answers (said on
    the page); RuntimeError with the daemon's reason when it refuses."""
    try:
        return searchclient.ask(
            settings.search_socket_path(), settings.search_key_path(), data, name, n
        )
    except searchclient.DaemonAbsent:
        st.caption(
            "no daemon answers searches for this store: searching in a process of its own "
            "(it loads the face model, several seconds)"
        )
        return None
    except searchclient.SearchRefused as exc:
        raise RuntimeError(str(exc)) from exc


def _your_photo(settings: DashboardSettings, data: bytes) -> None:
    """The uploaded photo, decoded as the encoder decodes it (its pixel limit included):
    Streamlit's own st.image would decode any upload, a decompression bomb too."""
    try:
        shown = images.render(data, None, YOUR_PHOTO_SIDE, settings.max_pixels)
    except ImageReadError as exc:
        st.warning(ui.md(f"your photo cannot be shown: {exc}"))
        return
    st.image(shown, caption="your photo")


def render(settings: DashboardSettings) -> None:
    st.header("Search by photo")
    st.caption(
        "Finds the stored faces nearest to the face in a photo, across every folder, "
        "with the store's own model. The photo is not added to the data set."
    )
    upload = st.file_uploader(
        "a photo with one face", type=["jpg", "jpeg", "png", "webp", "bmp"], key="search_photo"
    )
    n = st.number_input("how many", min_value=1, max_value=200, value=20, key="search_n")
    if upload is None:
        return
    ckey = (upload.file_id, int(n))
    if st.session_state.get("search_key") != ckey:
        suffix = Path(upload.name).suffix.lower() or ".jpg"
        with st.spinner("encoding the photo and searching the store…"):
            try:
                result = ask_daemon(settings, upload.getvalue(), upload.name, int(n))
                if result is None:
                    with tempfile.TemporaryDirectory(prefix="facelint-search-") as tmp:
                        photo = Path(tmp) / f"photo{suffix}"
                        photo.write_bytes(upload.getvalue())
                        result = run_search(settings, photo, int(n))
            except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
                st.error(ui.md(f"search failed: {exc}"))
                return
        st.session_state["search_key"] = ckey
        st.session_state["search_result"] = result
    result = st.session_state["search_result"]
    hits = result.get("results", [])
    st.caption(
        f"{result.get('faces', 0)} face(s) in the photo; the {len(hits)} nearest stored "
        f"faces, best first ({ui.md(result.get('model', ''))})"
    )
    _your_photo(settings, upload.getvalue())
    for start in range(0, len(hits), COLUMNS):
        for col, hit in zip(st.columns(COLUMNS), hits[start : start + COLUMNS], strict=False):
            with col:
                box = tuple(hit["box"]) if hit.get("box") else None
                image = SimpleNamespace(path=hit["path"], box=box)
                ui.show_image(settings, image, FACE_SIDE, caption=f"{hit['score']:.3f}", face=True)
                st.markdown(f"**{ui.md(hit['folder'])}**")
                st.caption(ui.md(hit["path"].rsplit("/", 1)[-1]))
                st.page_link(
                    "views/person.py",
                    label="person page",
                    query_params={"name": hit["folder"]},
                    icon=":material/person:",
                )


if __name__ == "__main__":
    render(current())
