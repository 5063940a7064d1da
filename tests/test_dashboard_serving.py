"""How the dashboard is served, in real headless Chromium: `facelint dashboard` and
`facelint up` flags reaching the app, names that carry markdown and HTML, a foreign Host
header, a page that waits for a busy store (the server and the browser:
tests/browser_harness.py)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser_harness import (
    CARD,
    browser_page,
    free_port,
    requires_chromium,
    serving,
    stop,
    wait_for_focus,
    wait_healthy,
)

pytestmark = requires_chromium


@contextmanager
def facelint_dashboard(
    db: Path, root: Path, log_path: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[int]:
    """`facelint dashboard` (the installed script) on db and root with these flags, until
    the block ends; yields its port once it answers."""
    port = free_port()
    script = Path(sys.executable).with_name("facelint")
    cmd = [str(script), "dashboard", "--db", str(db), "--root", str(root), "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, *flags],
            cwd=log_path.parent,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(proc, port, log_path)
        yield port
    finally:
        stop(proc)


@pytest.mark.slow
def test_facelint_up_allow_file_actions_reaches_the_app(dev_copy, tmp_path, browser):
    """Issue 9, defect 4, for `facelint up`: the daemon and the dashboard, one flag. A
    SIGTERM to `up` (a service manager's stop) is a clean stop that ends the dashboard too
    (the other ways `up` ends: tests/test_up.py)."""
    from playwright.sync_api import expect

    from tests.daemon_harness import DaemonProcess, wait_for
    from tests.test_up import alive, children, port_free

    root, db = dev_copy
    port = free_port()
    command = ["up", str(root), "--db", str(db), "--port", str(port), "--allow-file-actions"]
    d = DaemonProcess(root, db, tmp_path, command=command)
    try:
        d.wait_ready()
        wait_healthy(d.proc, port, d.log_path)
        with browser_page(browser) as page:
            page.goto(f"http://127.0.0.1:{port}/pairs", wait_until="domcontentloaded")
            wait_for_focus(page)
            move = page.get_by_role("button", name="move to the right folder")
            expect(move.first).to_be_visible()
        kids = children(d.proc.pid)
        assert kids, "up has no child process"
        assert d.terminate() == 0
        wait_for(lambda: port_free(port), 10, "the dashboard's port to be free")
        wait_for(lambda: not any(alive(k) for k in kids), 10, "the dashboard to end")
    finally:
        d.close()


# -- the review queue of suggested mistakes (issue 7, item 4) --------------------------------

# Folder and file names cannot hold '/': these point the browser at 127.0.0.1:9 with
# backslashes, which browsers read as slashes. The URL payloads (?name=) use '/' itself.
IMG_NAME = r"![x](http:\\127.0.0.1:9\x.png)"
LINK_FOLDER = r"[link](http:\\127.0.0.1:9\)"
HTML_NAME = "<img src=x onerror=alert(1)>"
ITALIC_FOLDER = "_Joe_Biden_"
BOLD_NAME = f"**bold** {HTML_NAME}.jpg"
URL_NAMES = (
    "![x](http://127.0.0.1:9/x.png)",
    "[session expired, sign in](http://127.0.0.1:9/)",
    ITALIC_FOLDER,
)
# What a page must not have built out of a name: a link or an image pointing at the
# attacker's address, an image from `<img src=x>`, emphasis or a heading made of a name.
_BUILT_FROM_A_NAME = """() => {
    const found = [];
    const attacker = (u) => { try { const p = new URL(u, location.href);
        return p.port === '9' || p.pathname.endsWith('/x') || p.pathname.endsWith('x.png');
    } catch (e) { return false; } };
    for (const a of document.querySelectorAll('a[href]'))
        if (attacker(a.getAttribute('href'))) found.push('a ' + a.getAttribute('href'));
    for (const i of document.querySelectorAll('img'))
        if (i.hasAttribute('onerror') || attacker(i.getAttribute('src') || ''))
            found.push('img ' + i.getAttribute('src'));
    for (const e of document.querySelectorAll('em, strong, del, h1, h2, h3, h4, h5, h6'))
        if (['Joe_Biden', 'bold', 'heading', 'x', 'link'].includes(e.innerText.trim()))
            found.push(e.tagName + ' ' + e.innerText);
    return found;
}"""


def _plant_names(root: Path) -> dict[str, str]:
    """Rename the dev set's Biden pair and add a problem image, all with payload names;
    returns the root-relative paths planted."""
    (root / "Joe_Biden").rename(root / ITALIC_FOLDER)
    (root / ITALIC_FOLDER / "biden2.jpg").rename(root / ITALIC_FOLDER / f"{IMG_NAME}.jpg")
    joseph = root / "Joseph_Biden"
    (joseph / "Joseph_Biden_0004.jpg").rename(joseph / BOLD_NAME)
    (root / LINK_FOLDER).mkdir()
    (root / LINK_FOLDER / f"{HTML_NAME}.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    return {
        "biden2": f"{ITALIC_FOLDER}/{IMG_NAME}.jpg",
        "joseph4": f"Joseph_Biden/{BOLD_NAME}",
        "broken": f"{LINK_FOLDER}/{HTML_NAME}.png",
    }


def test_markdown_and_html_in_names_show_as_typed_on_every_page(
    dev_copy, run_scan, tmp_path, browser
):
    """Folders and files named with markdown and HTML, a status file and URL parameters
    carrying more: every page in Chromium shows them literally, builds no link, image or
    emphasis from them, and the browser asks 127.0.0.1:9 for nothing. Served by
    `facelint dashboard --allow-file-actions`: the move it makes is the flag reaching the
    app (issue 9, defect 4; without the flag: the foreign-host test's server)."""
    import json
    from urllib.parse import quote, urlparse

    from PIL import Image, ImageOps
    from playwright.sync_api import expect

    root, db = dev_copy
    planted = _plant_names(root)
    run_scan(root, db)
    status = tmp_path / "status.json"
    status.write_text(
        json.dumps(
            {
                "state": f"encoding {IMG_NAME}",
                "heartbeat": time.time() + 3600,
                "pid": 1,
                "message": f"cannot read {URL_NAMES[0]} {URL_NAMES[1]}",
            }
        ),
        encoding="utf-8",
    )
    photo = tmp_path / "flipped.jpg"
    with Image.open(root / "Joseph_Biden" / "Joseph_Biden_0001.jpg") as im:
        ImageOps.mirror(im.convert("RGB")).save(photo, quality=90)

    requests: list[str] = []
    dialogs: list[str] = []
    served = facelint_dashboard(
        db,
        root,
        tmp_path / "facelint-dashboard.log",
        "--allow-file-actions",
        env={"FACELINT_STATUS_FILE": str(status)},
    )
    with served as port, browser_page(browser) as page:
        url = f"http://127.0.0.1:{port}/"
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def visit(path: str, header: str, *literal: str) -> None:
            if "?" in path or not page.url.startswith(url):
                page.goto(url + path, wait_until="domcontentloaded")
            else:
                # As a reader goes from page to page: the sidebar's link, in the page
                # already loaded (a load of the whole app costs Chromium ~1 CPU-s; the
                # pages with a name in the URL are loaded by it).
                page.locator(f'[data-testid="stSidebarNav"] a[href$="/{path}"]').click()
                page.wait_for_url(url + path)
            expect(page.get_by_role("heading", name=header).first).to_be_visible(timeout=60_000)
            # As the reader reads it: md()'s invisible word joiners (no autolinks) left out.
            page.wait_for_function(
                """want => { const t = document.body.innerText.replaceAll('\\u2060', '');
                            return want.every(w => t.includes(w)); }""",
                arg=list(literal),
                timeout=30_000,
            )
            # Images and late fragments: until the page has fetched everything it asked for.
            page.wait_for_load_state("networkidle")
            assert page.locator('[data-testid="stException"]').count() == 0, path
            assert page.evaluate(_BUILT_FROM_A_NAME) == [], path

        visit("", "Review", ITALIC_FOLDER, BOLD_NAME)
        visit("pairs", "Pairs", ITALIC_FOLDER, f"{IMG_NAME}.jpg", BOLD_NAME)
        # A file action and its toast (one of the planted names moved), then the log. The
        # first card's own button: the page's first button can belong to the second card
        # while the first is still drawing its buttons.
        first = page.locator(CARD).first
        first.get_by_role("button", name="move to the right folder").click()
        toast = page.locator('[data-testid="stToast"]').filter(has_text="moved ")
        expect(toast.first).to_be_visible(timeout=30_000)
        said = toast.first.inner_text()
        assert planted["biden2"] in said or planted["joseph4"] in said, said
        assert page.evaluate(_BUILT_FROM_A_NAME) == []
        visit("actions", "File actions", "move: ", ITALIC_FOLDER)
        for name in URL_NAMES:
            # A name no folder has is said so, with the name as typed (issue 15).
            shown = (
                f"Pairs involving {name}" if name == ITALIC_FOLDER else f"no such folder: {name}"
            )
            visit(f"person?name={quote(name)}", "Person", shown)
        visit("problems", "Problems", LINK_FOLDER, f"{HTML_NAME}.png")
        visit("status", "Status", f"encoding {IMG_NAME}", URL_NAMES[1])
        visit("search", "Search by photo")
        page.locator('input[type="file"]').set_input_files(str(photo))
        expect(page.get_by_text("1 face(s) in the photo")).to_be_visible(timeout=120_000)
        expect(page.get_by_text(ITALIC_FOLDER).first).to_be_visible(timeout=30_000)
        page.wait_for_load_state("networkidle")
        assert page.evaluate(_BUILT_FROM_A_NAME) == []
    assert [r for r in requests if urlparse(r).port == 9] == []
    assert dialogs == []


# -- the Host header (issue 16, item 11) -------------------------------------------------------


def _upgrade(port: int, host: str, origin: str) -> str:
    """The status line Streamlit answers a websocket upgrade of /_stcore/stream with."""
    request = (
        "GET /_stcore/stream HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Origin: {origin}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: streamlit\r\n"
        "\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request.encode("ascii"))
        return s.recv(4096).decode("latin-1").split("\r\n", 1)[0]


def _get(port: int, path: str, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", path, headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_foreign_host_is_refused_on_the_websocket_and_over_http(scanned_dev, tmp_path, browser):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 opens the
    dashboard's websocket with Host and Origin both evil.example, so the same-origin check
    passes. The dashboard `facelint dashboard` serves refuses it by its Host. Served
    without --allow-file-actions, its pages offer no file action (issue 9, defect 4)."""
    from playwright.sync_api import expect

    root, db = scanned_dev
    with facelint_dashboard(db, root, tmp_path / "dashboard.log") as port:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert _upgrade(port, host, f"http://{host}").split(" ")[1] == "101", host
        for host in ("evil.example", f"evil.example:{port}"):
            answer = _upgrade(port, host, f"http://{host}")
            assert answer.split(" ")[1] == "403", (host, answer)
        # Plain HTTP too: the page, a stored image's URL shape, the health route.
        for path in ("/", "/media/0.jpg", "/_stcore/health"):
            assert _get(port, path, "evil.example") == 400, path
        assert _get(port, "/", f"localhost:{port}") == 200
        with browser_page(browser) as page:
            page.goto(f"http://127.0.0.1:{port}/pairs", wait_until="domcontentloaded")
            wait_for_focus(page)
            expect(page.get_by_text("File actions are off").first).to_be_visible()
            assert page.get_by_role("button", name="move to the right folder").count() == 0


def test_a_page_that_waits_for_the_store_says_who_holds_it_within_a_second(dev_copy, browser):
    """The Status page meets a store another process holds: while it waits, a note names
    the holder's pid and the page's limit, within a second of the page reaching the read
    (its "Store" heading is drawn just before it); the page then says busy and retries
    (each retry waits and says so again), and once the store is let go no note is left."""
    from playwright.sync_api import expect

    from tests.conftest import release, store_held_by_another_process

    root, db = dev_copy
    with (
        serving(db, root, "--page-lock-timeout", "4") as url,
        browser_page(browser) as page,
        store_held_by_another_process(db) as holder,
    ):
        page.goto(url + "status", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Store")).to_be_visible(timeout=60_000)
        started = time.monotonic()
        note = page.get_by_text("waiting up to 4 s")
        expect(note).to_be_visible(timeout=1_000)
        said_after = time.monotonic() - started
        text = note.inner_text()
        assert f"pid {holder.pid}" in text and "held for writing by" in text, text
        assert said_after < 1.0
        expect(page.get_by_text("store busy, retrying")).to_be_visible(timeout=10_000)
        release(holder)
        expect(note).to_have_count(0, timeout=20_000)
        expect(page.get_by_text("store busy, retrying")).to_have_count(0, timeout=20_000)
