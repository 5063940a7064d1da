"""The dashboard served by `streamlit run` and used in real headless Chromium: the
server, the browser and what the browser tests read off a page
(tests/test_dashboard_browser.py, tests/test_dashboard_serving.py).

Debian's chromium (`apt-get install -y chromium`) driven by Playwright through its
executable path: `playwright install` is never needed (and would download a browser).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from store import decisions
from store.connection import open_store
from store.queries import pairs_page
from store.queries.pairs_page import PairFilter
from tests.conftest import REPO

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FloatRect, Page

CHROMIUM = Path("/usr/bin/chromium")
APP = str(REPO / "dashboard" / "serve.py")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Each browser test module's mark: skipped, saying why, where Debian's browser is missing.
requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no {CHROMIUM}: install Debian's browser with `apt-get install -y chromium`",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the dashboard exited: {log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("the dashboard did not answer /_stcore/health within 60 s")
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def serving(db: Path, root: Path, *app_args: str) -> Iterator[str]:
    """`streamlit run dashboard/serve.py -- --db ... --root ... *app_args` (what
    `facelint dashboard` serves); yields its URL."""
    port = free_port()
    # Streamlit's own log goes to a file, not a pipe nobody reads (a full pipe would
    # stall the server).
    log_path = db.parent / f"streamlit-{port}.log"
    serve = ["--server.address", "127.0.0.1", "--server.port", str(port)]
    # As `facelint dashboard` serves it (daemon/launch.py): no watch on the source files.
    quiet = ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    quiet += ["--server.fileWatcherType", "none"]
    where = ["--db", str(db), "--root", str(root)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                APP,
                *serve,
                *quiet,
                "--",
                *where,
                *app_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(proc, port, log_path)
            yield f"http://127.0.0.1:{port}/"
        finally:
            stop(proc)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (its start costs seconds: one per
    test module, conftest's `browser`)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


# Whether the page took the last key: Streamlit's shortcut handler (on the document)
# calls preventDefault on a key it acts on; this listener on the window hears it after.
_KEY_TAKEN = "window.addEventListener('keydown', e => { window.__keyTaken = e.defaultPrevented; });"


@contextmanager
def browser_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(_KEY_TAKEN)
    try:
        yield context.new_page()
    finally:
        context.close()


CARD = '[class*="st-key-qcard-pairs-"]'


def focused_card(page: Page, queue: str = "pairs") -> str | None:
    """The key of the `queue` card ("pairs", "mistakes") holding the browser's focus
    ("12-34"), or None."""
    prefix = f"st-key-qcard-{queue}-"
    return page.evaluate(
        f"""() => {{
            const c = document.activeElement
                && document.activeElement.closest('[class*="{prefix}"]');
            if (!c) return null;
            const k = [...c.classList].find(x => x.startsWith('{prefix}'));
            return k.slice('{prefix}'.length);
        }}"""
    )


def press_key(page: Page, key: str, tries: int = 3) -> None:
    """Press `key` as a reader does: again when the page did not take it. Now and then
    Streamlit lets the first key on a page just loaded pass: no shortcut handler ran and
    nothing went to the server (seen in 2 of 6 runs of the merge test: A after its first
    visit, J after a reload; CI failed on such a J). A key it took is never pressed twice,
    so nothing is decided twice."""
    for _ in range(tries):
        page.evaluate("() => { window.__keyTaken = null; }")
        page.keyboard.press(key)
        if page.evaluate("() => window.__keyTaken"):
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"the page took none of {tries} presses of {key.upper()}")


# How long a key may take to do its work: whether it does, not how fast (bench_dashboard.py
# times that): with the suite's other worker starting a Ray cluster on the same two
# cores, one press went past 30 s twice in a day's runs.
KEY_DONE_MS = 90_000


def press_and_wait(page: Page, key: str, before: str) -> float:
    """Press `key` on the focused card `before`; milliseconds until that card is decided
    (its buttons gone) and the browser's focus is on another card's enabled button."""
    page.evaluate("() => { window.__pressed = performance.now(); }")
    press_key(page, key)
    handle = page.wait_for_function(
        f"""(b) => {{
            const old = document.getElementsByClassName('st-key-qcard-pairs-' + b)[0];
            if (old && old.querySelector('button')) return false;
            const a = document.activeElement;
            const c = a && a.closest('{CARD}');
            if (!c || c.classList.contains('st-key-qcard-pairs-' + b) || a.disabled) return false;
            return performance.now() - window.__pressed;
        }}""",
        arg=before,
        polling=5,
        timeout=KEY_DONE_MS,
    )
    return float(handle.json_value())


def wait_for_focus(page: Page) -> str:
    page.wait_for_function(
        f"document.activeElement && document.activeElement.closest('{CARD}')", timeout=60_000
    )
    found = focused_card(page)
    assert found is not None
    return found


def loaded_images(page: Page, count: int) -> list[FloatRect]:
    page.wait_for_function(
        """n => {
            const imgs = Array.from(document.querySelectorAll('[data-testid="stImage"] img'));
            return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=count,
        timeout=60_000,
    )
    images = page.locator('[data-testid="stImage"] img')
    boxes = [images.nth(i).bounding_box() for i in range(count)]
    assert all(b is not None for b in boxes)
    return boxes  # type: ignore[return-value]


def captions_of(page: Page) -> list[str]:
    return page.locator('[data-testid="stImageCaption"]').all_inner_texts()


def decision_of(db: Path, key: str) -> str | None:
    lo, hi = (int(x) for x in key.split("-"))
    with open_store(db, read_only=True, timeout=10) as con:
        pair = next(
            p
            for p in pairs_page.pair_page(con, PairFilter(state="all"), 1000)
            if (p.lo, p.hi) == (lo, hi)
        )
        return decisions.decision_for(con, pair.a.hash, pair.b.hash)


def press_undo(page: Page) -> None:
    """U, once the page drew its "undo last" enabled: a key on a button not drawn yet
    (the rerun that puts the decision on the undo stack still going) does nothing."""
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="undo last").first).to_be_enabled(timeout=30_000)
    press_key(page, "u")
