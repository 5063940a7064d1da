"""The dashboard served by `streamlit run` and used in real headless Chromium.

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
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from store import review
from store.connection import open_store
from store.review import PairFilter
from tests.conftest import REPO

if TYPE_CHECKING:
    from playwright.sync_api import FloatRect, Page

CHROMIUM = Path("/usr/bin/chromium")
APP = str(REPO / "dashboard" / "app.py")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no {CHROMIUM}: install Debian's browser with `apt-get install -y chromium`",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dashboard_url(dev_copy: tuple[Path, Path]) -> Iterator[str]:
    root, db = dev_copy
    port = _free_port()
    # Streamlit's own log goes to a file, not a pipe nobody reads (a full pipe would
    # stall the server).
    log = (db.parent / "streamlit.log").open("wb")
    serve = ["--server.address", "127.0.0.1", "--server.port", str(port)]
    quiet = ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    app_args = ["--db", str(db), "--root", str(root), "--allow-file-actions", "--page-size", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", APP, *serve, *quiet, "--", *app_args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited: {(db.parent / 'streamlit.log').read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("streamlit did not answer /_stcore/health within 60 s")
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _loaded_images(page: Page, count: int) -> list[FloatRect]:
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


def _captions(page: Page) -> list[str]:
    return page.locator('[data-testid="stImageCaption"]').all_inner_texts()


def test_top_pair_side_by_side_then_different_people_removes_it(dashboard_url, dev_copy):
    from playwright.sync_api import expect, sync_playwright

    _, db = dev_copy
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(dashboard_url, wait_until="domcontentloaded")
            left, right = _loaded_images(page, 6)[:2]
            # Side by side: one row, left one wholly left of the right one, both real.
            assert abs(left["y"] - right["y"]) < 2
            assert left["x"] + left["width"] <= right["x"]
            assert min(left["width"], right["width"]) >= 200
            assert _captions(page)[:2] == ["biden2.jpg", "Joseph_Biden_0004.jpg"]
            expect(page.get_by_text("Joe_Biden", exact=True).first).to_be_visible()
            expect(page.get_by_text("Joseph_Biden", exact=True).first).to_be_visible()

            page.get_by_role("button", name="different people").first.click()
            expect(page.get_by_text("biden2.jpg / Joseph_Biden_0004.jpg: different")).to_be_visible(
                timeout=30_000
            )
            page.reload(wait_until="domcontentloaded")
            _loaded_images(page, 6)
            captions = _captions(page)
            assert captions[:2] == ["biden2.jpg", "Joseph_Biden_0001.jpg"]
            assert "Joseph_Biden_0004.jpg" not in captions
        finally:
            browser.close()
    with open_store(db, read_only=True, timeout=10) as con:
        decided = review.pair_page(con, PairFilter(state="different"), 5)
    assert [(d.a.path, d.b.path) for d in decided] == [
        ("Joe_Biden/biden2.jpg", "Joseph_Biden/Joseph_Biden_0004.jpg")
    ]
