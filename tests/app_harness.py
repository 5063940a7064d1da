"""Running the dashboard in-process (Streamlit's AppTest) the way `streamlit run` would,
and reading what it shows: shared by the dashboard's AppTest suites."""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import Any

from streamlit.testing.v1 import AppTest

from tests.conftest import REPO, store_held_by_another_process

__all__ = [
    "APP",
    "SHORT_LOCK_WAIT",
    "app_test",
    "as_read",
    "captions",
    "shown",
    "start",
    "store_held_by_another_process",
]

APP = str(REPO / "dashboard" / "app.py")
# For tests of a held store: how long a page waits before it says busy (start() waits 1 s).
SHORT_LOCK_WAIT = ("--lock-timeout", "0.2")


@functools.cache
def _components() -> Any:
    from streamlit.components.v2.component_manager import BidiComponentManager

    manager = BidiComponentManager()
    manager.discover_and_register_components(start_file_watching=False)
    return manager


def app_test(timeout: float = 60) -> AppTest:
    """The dashboard's AppTest. Each AppTest looks through every installed package for
    Streamlit components before its first run (~0.2 CPU-s with this project's extras);
    the dashboard has none, so one look per test process is shared. (A Streamlit that
    renames the attribute only makes each AppTest look again.)"""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at._bidi_component_manager = _components()
    return at


def start(
    monkeypatch,
    root: Path,
    db: Path,
    *extra: str,
    page: str | None = "views/pairs.py",
    page_size: int | None = 3,
) -> AppTest:
    """The app as `streamlit run dashboard/app.py -- ...` would run it, after one run,
    on `page` (None: the landing page, the review queue)."""
    fixed = ["--page-lock-timeout", "1", "--user", "tester"]
    if page_size is not None:
        fixed += ["--page-size", str(page_size)]
    monkeypatch.setattr(
        sys, "argv", ["app.py", "--db", str(db), "--root", str(root), *fixed, *extra]
    )
    at = app_test()
    if page is not None:
        # Straight to the page, as a bookmarked URL opens it: the landing page's run (the
        # whole review queue, ~0.1-0.5 CPU-s) is no part of what these tests look at.
        at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    if page is not None:
        # Before a first run AppTest names a page by its file name, which is not the URL
        # of a page given its own (File actions: /actions): once the run registered the
        # pages, a page that did not match is opened by its URL.
        at.switch_page(page)
        if at._page_hash != at._finished_page_script_hash:
            at.run()
            assert not at.exception, at.exception
    return at


# A backslash before ASCII punctuation: markdown's escape (dashboard/ui.py: md), which the
# reader never sees.
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def as_read(markdown: str) -> str:
    """Markdown source with its backslash escapes (and md()'s invisible word joiners,
    which keep addresses from becoming links) taken out: the text as it reads."""
    return _ESCAPE.sub(r"\1", markdown).replace("\u2060", "")


def markdown_source(at: AppTest) -> str:
    """Every markdown text the page sends, escapes and all, one string."""
    parts: list[str] = []
    for kind in ("title", "header", "subheader", "markdown", "caption"):
        parts += [str(e.value) for e in getattr(at, kind)]
    for kind in ("info", "warning", "error", "success"):
        parts += [f"[{kind}] {e.value}" for e in getattr(at, kind)]
    parts += [f"[toast] {t.value}" for t in at.toast]
    return "\n".join(parts)


def shown(at: AppTest) -> str:
    """Every text the page shows, one string, as it reads (markup such as ** stays)."""
    return as_read(markdown_source(at))


def captions(at: AppTest) -> list[str]:
    """Captions of the images shown (the whole photos beside the faces have none), as
    they read."""
    return [as_read(img.caption) for e in at.get("image") for img in e.proto.imgs if img.caption]
