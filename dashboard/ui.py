"""Pieces every page uses: store access that shows a message instead of an exception,
the message left by the last button, names and images rendered safely."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote_plus

import duckdb
import streamlit as st
from PIL import UnidentifiedImageError

from dashboard import db, files, images
from dashboard.files import FileActionRefused, UnsafePath
from dashboard.settings import DashboardSettings
from store.connection import StoreBusy, StoreMissing

T = TypeVar("T")

BUSY = "store busy, retrying"
RETRY_SECONDS = 2.0

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md(text: str) -> str:
    """`text` as literal markdown: a folder named `*x*` or `$y$` shows as typed."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def search_url(klass: str) -> str:
    """An image search for a class name, for the reader's browser (the server fetches
    nothing). Folder names use _ for spaces."""
    return "https://www.google.com/search?tbm=isch&q=" + quote_plus(klass.replace("_", " "))


def query(settings: DashboardSettings, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T | None:
    """fn on a fresh read-only connection; None after showing why, when it cannot run."""
    try:
        result = db.read(settings, fn)
    except StoreBusy as exc:
        busy_notice(str(exc))
    except StoreMissing as exc:
        st.error(str(exc))
    except duckdb.Error as exc:
        st.error(f"query failed: {exc}")
    else:
        st.session_state.pop("_busy_armed", None)
        return result
    return None


def busy_notice(detail: str) -> None:
    st.warning(f"{BUSY}: another process is writing to the store. ({detail})")

    # Re-run the page once the fragment's timer fires; its first, inline run only arms it.
    @st.fragment(run_every=RETRY_SECONDS)
    def _retry() -> None:
        if st.session_state.pop("_busy_armed", False):
            st.rerun()
        st.session_state["_busy_armed"] = True

    _retry()


def act(fn: Callable[..., Any], *args: Any) -> None:
    """Run a button's action; what happened (or why not) is shown on the next run."""
    try:
        done = fn(*args)
    except (FileActionRefused, UnsafePath) as exc:
        flash("error", f"refused: {exc}")
        return
    except StoreBusy as exc:
        flash("warning", f"{BUSY} — nothing was changed, try again: {exc}")
        return
    except (StoreMissing, duckdb.Error, OSError) as exc:
        flash("error", f"failed, nothing was changed: {exc}")
        return
    flash("success", done.message, getattr(done, "action_id", None))


def flash(kind: str, message: str, action_id: int | None = None) -> None:
    st.session_state["flash"] = (kind, message, action_id)


def show_flash(undo: Callable[[int], None] | None) -> None:
    """The last button's outcome, with an undo button when it moved a file."""
    item = st.session_state.pop("flash", None)
    if item is None:
        return
    kind, message, action_id = item
    getattr(st, kind)(message)
    if action_id is not None and undo is not None:
        st.button(
            f"undo #{action_id}", key=f"flash-undo-{action_id}", on_click=undo, args=(action_id,)
        )


def show_image(
    settings: DashboardSettings,
    image: Any,
    max_side: int,
    caption: str | None = None,
) -> bool:
    """Show one image of the store, read through the root-confined helper; False (with a
    message in its place) when it cannot be shown."""
    try:
        data = files.read_image_bytes(settings.root, image.path)
        shown = images.render(data, image.box, max_side)
    except UnsafePath as exc:
        st.error(str(exc))
        return False
    except FileNotFoundError as exc:
        st.warning(str(exc))
        return False
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        st.warning(f"{image.path}: cannot show this image ({exc})")
        return False
    st.image(shown, caption=caption)
    return True
