"""Pieces every page uses: store access that shows a message instead of an exception,
the message left by the last button, names and images rendered safely."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_plus

import duckdb
import streamlit as st

from daemon.common.imaging import ImageReadError
from dashboard import db, files, images
from dashboard.files import FileActionRefused, UnsafePath
from dashboard.settings import DashboardSettings
from store.connection import StoreBusy, StoreMissing

T = TypeVar("T")

BUSY = "store busy, retrying"
RETRY_SECONDS = 2.0

# The characters that start a construct Streamlit renders in markdown: emphasis, code,
# links and images, HTML and entities (`<`, `&`), headings, lists, tables, math (`$`),
# autolinks (`www.x`, `a@b.c`, `http://`), `:red[...]` and `:material/...:` directives.
# Each is escaped with a backslash (CommonMark allows it for any ASCII punctuation).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&@])")
_BREAKS = {"\r\n": "\\r\\n", "\r": "\\r", "\n": "\\n"}
# GFM turns `http://…`, `www.…` and `a@b.c` in plain text into links after escapes are
# read (a backslash does not stop it): an invisible word joiner (U+2060) in each breaks
# the pattern and shows nothing.
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i)(https?)(?=:)|(www)(?=\.)|(?=@)")


def md(text: object) -> str:
    """`text` shown literally wherever Streamlit renders markdown (markdown, captions,
    headers, alerts, toasts, expander and widget labels, tooltips, st.table cells): a
    folder named `_Joe_Biden_`, `![x](http://…)` or `<img …>` shows as typed, with a line
    break shown as `\\n` rather than starting a new block, and no web or mail address
    made a link."""
    flat = str(text)
    for brk, shown in _BREAKS.items():
        flat = flat.replace(brk, shown)
    flat = _AUTOLINK.sub(lambda m: (m.group(1) or m.group(2) or "") + WORD_JOINER, flat)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat)


def search_url(klass: str) -> str:
    """An image search for a class name, for the reader's browser (the server fetches
    nothing). Folder names use _ for spaces."""
    return "https://www.google.com/search?tbm=isch&q=" + quote_plus(klass.replace("_", " "))


def query(
    settings: DashboardSettings,
    fn: Callable[[duckdb.DuckDBPyConnection], T],
    keep: str | None = None,
) -> T | None:
    """fn on a fresh read-only connection; None after showing why, when it cannot run.

    With `keep`, the last result loaded under that name stands in while the store is
    busy: the page keeps showing what it had, with a small "updating…" notice, rather
    than emptying itself each time the daemon writes.
    """
    try:
        result = db.read(settings, fn)
    except StoreBusy as exc:
        if keep is not None and f"_kept_{keep}" in st.session_state:
            st.caption(f"updating… {plain_busy(str(exc))}; showing what was loaded before.")
            busy_notice(str(exc), quiet=True)
            return st.session_state[f"_kept_{keep}"]
        busy_notice(str(exc))
    except StoreMissing as exc:
        st.error(md(exc))
    except duckdb.Error as exc:
        st.error(
            "the store could not be read: it may be from a newer facelint or damaged "
            "(`facelint status` says more)."
        )
        with st.expander("details"):
            st.code(str(exc), language=None)
    else:
        st.session_state.pop("_busy_since", None)
        if keep is not None:
            st.session_state[f"_kept_{keep}"] = result
        return result
    return None


def plain_busy(detail: str) -> str:
    """Why the store is busy, in words: the lock message itself means nothing to a reader."""
    if "dashboard" in detail:
        return "another page of this dashboard is reading the store"
    return "the daemon (or another program) is writing to the store"


def busy_notice(detail: str, quiet: bool = False) -> None:
    if not quiet:
        st.warning(f"{BUSY}: {plain_busy(detail)}. It is tried again every few seconds.")

    # Re-run the page once the fragment's timer fires (not on its first, inline run, nor
    # when a second busy query of the same run draws it again: that would loop).
    st.session_state.setdefault("_busy_since", time.monotonic())

    @st.fragment(run_every=RETRY_SECONDS)
    def _retry() -> None:
        since = st.session_state.get("_busy_since")
        if since is not None and time.monotonic() - since >= RETRY_SECONDS:
            st.session_state.pop("_busy_since", None)
            st.rerun()

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
    if kind == "success":
        # A confirmation beside where the reader looks, not at the top of a long page.
        st.toast(md(message), icon="✅")
    else:
        getattr(st, kind)(md(message))
    if action_id is not None and undo is not None:
        st.button(
            f"undo #{action_id}", key=f"flash-undo-{action_id}", on_click=undo, args=(action_id,)
        )


@st.cache_data(max_entries=4000, show_spinner=False)
def _rendered(
    root: str,
    path: str,
    stamp: tuple[int, int],
    box: tuple[int, int, int, int] | None,
    side: int,
    face: bool,
    max_pixels: int,
) -> bytes:
    """An image as shown, cached by its file's (mtime, size): a decision reruns the queue,
    and re-decoding a dozen photos each time would cost most of the 300 ms a card has."""
    data = files.read_image_bytes(Path(root), path)
    if face:
        return images.face_crop(data, box, side, max_pixels)
    return images.render(data, box, side, max_pixels)


def _stamp(settings: DashboardSettings, path: str) -> tuple[int, int]:
    target = files.inside(settings.root, path)
    if not target.is_file():
        raise FileNotFoundError(f"{path} is not on disk (moved or deleted since the scan?)")
    st_ = target.stat()
    return st_.st_mtime_ns, st_.st_size


def warm_image(settings: DashboardSettings, image: Any, max_side: int, face: bool) -> None:
    """Render an image into the cache ahead of its page (the next page of a queue): the
    draw then costs a cache hit. A failure is the draw's to say, later."""
    try:
        _rendered(
            str(settings.root),
            image.path,
            _stamp(settings, image.path),
            image.box,
            max_side,
            face,
            settings.max_pixels,
        )
    except (UnsafePath, ImageReadError, OSError, ValueError):
        return


def show_image(
    settings: DashboardSettings,
    image: Any,
    max_side: int,
    caption: str | None = None,
    face: bool = False,
    box: tuple[int, int, int, int] | None = None,
) -> bool:
    """Show one image of the store, read through the root-confined helper; False (with a
    message in its place) when it cannot be shown. `face`: the face crop (the stored box,
    or `box`, with margin) instead of the whole image with the box drawn. `caption` is
    plain text, shown as typed."""
    try:
        shown = _rendered(
            str(settings.root),
            image.path,
            _stamp(settings, image.path),
            box or image.box,
            max_side,
            face,
            settings.max_pixels,  # what the encoder refused is refused here too
        )
    except UnsafePath as exc:
        st.error(md(exc))
        return False
    except FileNotFoundError as exc:
        st.warning(md(exc))
        return False
    except (ImageReadError, OSError, ValueError) as exc:
        # Refused as the encoder refuses it (unreadable, over the pixel limit, a
        # decompression bomb), or the file could not be read: words, never a traceback.
        st.warning(md(f"{image.path}: cannot show this image ({exc})"))
        return False
    st.image(shown, caption=md(caption) if caption else None)
    return True
