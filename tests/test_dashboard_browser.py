"""The dashboard served by `streamlit run` and used in real headless Chromium.

Debian's chromium (`apt-get install -y chromium`) driven by Playwright through its
executable path: `playwright install` is never needed (and would download a browser).
"""

from __future__ import annotations

import http.client
import shutil
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

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no {CHROMIUM}: install Debian's browser with `apt-get install -y chromium`",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(proc: subprocess.Popen, port: int, log: Path) -> None:
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


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextmanager
def serving(db: Path, root: Path, *app_args: str) -> Iterator[str]:
    """`streamlit run dashboard/serve.py -- --db ... --root ... *app_args` (what
    `facelint dashboard` serves); yields its URL."""
    port = _free_port()
    # Streamlit's own log goes to a file, not a pipe nobody reads (a full pipe would
    # stall the server).
    log_path = db.parent / f"streamlit-{port}.log"
    serve = ["--server.address", "127.0.0.1", "--server.port", str(port)]
    quiet = ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
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
            _wait_healthy(proc, port, log_path)
            yield f"http://127.0.0.1:{port}/"
        finally:
            _stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for the module (its start costs seconds); each test gets a fresh
    context of its own from browser_page(), so no cookie or storage carries over."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def browser_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def dashboard_url(dev_copy_loose: tuple[Path, Path]) -> Iterator[str]:
    """The loosely scanned dev set: at the default threshold the dev faces hold only the
    nine Biden pairs, too few to clear ten by keyboard."""
    root, db = dev_copy_loose
    with serving(db, root, "--allow-file-actions", "--page-size", "3") as url:
        yield url


CARD = '[class*="st-key-qcard-pairs-"]'


def _focused_card(page: Page) -> str | None:
    """The key of the card holding the browser's focus ("12-34"), or None."""
    return page.evaluate(
        f"""() => {{
            const c = document.activeElement && document.activeElement.closest('{CARD}');
            if (!c) return null;
            const k = [...c.classList].find(x => x.startsWith('st-key-qcard-pairs-'));
            return k.slice('st-key-qcard-pairs-'.length);
        }}"""
    )


def press_and_wait(page: Page, key: str, before: str) -> float:
    """Press `key` on the focused card `before`; milliseconds until that card is decided
    (its buttons gone) and the browser's focus is on another card's enabled button."""
    page.evaluate("() => { window.__pressed = performance.now(); }")
    page.keyboard.press(key)
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
        # Whether the key does its work, not how fast (bench_dashboard.py times that): with
        # the suite's other worker starting a Ray cluster on the same two cores, one press
        # went past 30 s twice in a day's runs.
        timeout=90_000,
    )
    return float(handle.json_value())


def wait_for_focus(page: Page) -> str:
    page.wait_for_function(
        f"document.activeElement && document.activeElement.closest('{CARD}')", timeout=60_000
    )
    found = _focused_card(page)
    assert found is not None
    return found


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


def _decision(db: Path, key: str) -> str | None:
    lo, hi = (int(x) for x in key.split("-"))
    with open_store(db, read_only=True, timeout=10) as con:
        pair = next(
            p
            for p in pairs_page.pair_page(con, PairFilter(state="all"), 1000)
            if (p.lo, p.hi) == (lo, hi)
        )
        return decisions.decision_for(con, pair.a.hash, pair.b.hash)


def test_faces_side_by_side_then_different_people_by_keyboard(
    dashboard_url, dev_copy_loose, browser
):
    from playwright.sync_api import expect

    _, db = dev_copy_loose
    with browser_page(browser) as page:
        page.goto(dashboard_url + "pairs", wait_until="domcontentloaded")
        first = wait_for_focus(page)
        # Per card: face crop and whole photo of the left image, then of the right one.
        face_a, whole_a, face_b, _ = _loaded_images(page, 12)[:4]
        assert abs(face_a["y"] - face_b["y"]) < 2
        assert face_a["x"] + face_a["width"] <= whole_a["x"] < face_b["x"]
        # The face is shown large, the whole photo small beside it.
        assert face_a["width"] >= 150 and whole_a["width"] < face_a["width"]
        assert _captions(page)[:2] == ["biden2.jpg", "Joseph_Biden_0004.jpg"]
        expect(page.get_by_text("Joe_Biden", exact=True).first).to_be_visible()
        expect(page.get_by_text("Joseph_Biden", exact=True).first).to_be_visible()

        press_and_wait(page, "d", first)
        expect(page.get_by_text("biden2.jpg / Joseph_Biden_0004.jpg: different")).to_be_visible(
            timeout=30_000
        )
        page.reload(wait_until="domcontentloaded")
        wait_for_focus(page)
        _loaded_images(page, 12)
        captions = _captions(page)
        assert captions[:2] == ["biden2.jpg", "Joseph_Biden_0001.jpg"]
        assert "Joseph_Biden_0004.jpg" not in captions
    with open_store(db, read_only=True, timeout=10) as con:
        decided = pairs_page.pair_page(con, PairFilter(state="different"), 5)
    assert [(d.a.path, d.b.path) for d in decided] == [
        ("Joe_Biden/biden2.jpg", "Joseph_Biden/Joseph_Biden_0004.jpg")
    ]


def test_ten_pairs_cleared_by_keyboard_alone(dashboard_url, dev_copy_loose, browser):
    """Keys only (no mouse): D, S, X decide the focused card, U undoes, J/K move; each
    decision is checked in the store."""
    _, db = dev_copy_loose
    keys = ["d", "s", "x", "d", "d", "s", "x", "d", "s", "d"]
    stored = {"d": "different", "s": "same", "x": "skipped"}
    decided: list[tuple[str, str]] = []
    with browser_page(browser) as page:
        page.goto(dashboard_url + "pairs", wait_until="domcontentloaded")
        focus = wait_for_focus(page)
        # Undo last: decide, take it back, the same card has the focus again.
        press_and_wait(page, "x", focus)
        assert _decision(db, focus) == "skipped"
        page.keyboard.press("u")
        page.wait_for_function(
            "k => document.activeElement.closest('.st-key-qcard-pairs-' + k)", arg=focus
        )
        assert _decision(db, focus) is None
        # Next and previous move the focus without deciding.
        page.keyboard.press("j")
        page.wait_for_function(
            "k => !document.activeElement.closest('.st-key-qcard-pairs-' + k)", arg=focus
        )
        page.keyboard.press("k")
        page.wait_for_function(
            "k => document.activeElement.closest('.st-key-qcard-pairs-' + k)", arg=focus
        )
        for key in keys:
            before = _focused_card(page)
            assert before is not None
            press_and_wait(page, key, before)
            decided.append((before, stored[key]))
    assert len({k for k, _ in decided}) == 10
    for key, want in decided:
        assert _decision(db, key) == want, key


def test_a_symlink_loop_in_place_of_an_image_is_refused_not_a_crash(dev_copy, browser):
    """Issue 9, defect 5: `ln -s -- -rf.jpg Joe_Biden/-rf.jpg`, then load /pairs."""
    from playwright.sync_api import expect

    root, db = dev_copy
    image = root / "Joe_Biden" / "biden2.jpg"
    image.unlink()
    image.symlink_to("biden2.jpg")  # a link to itself: a loop
    with serving(db, root, "--page-size", "3") as url, browser_page(browser) as page:
        page.goto(url + "pairs", wait_until="domcontentloaded")
        expect(page.get_by_text("refused path 'Joe_Biden/biden2.jpg'").first).to_be_visible(
            timeout=60_000
        )
        wait_for_focus(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        # The rest of the page is still there: the other side of the pair, more pairs.
        expect(page.get_by_text("Joseph_Biden_0004.jpg").first).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Joseph_Biden_0001.jpg").first).to_be_visible(timeout=30_000)


@pytest.mark.parametrize("flag", [True, False])
def test_facelint_dashboard_allow_file_actions_reaches_the_app(
    scanned_dev, tmp_path, flag, browser
):
    """Issue 9, defect 4: the flag given to `facelint dashboard` shows the move and
    remove buttons in a real browser; without it they are not there."""
    from playwright.sync_api import expect

    root, db = scanned_dev
    port = _free_port()
    script = Path(sys.executable).with_name("facelint")
    cmd = [str(script), "dashboard", "--db", str(db), "--root", str(root), "--port", str(port)]
    log_path = tmp_path / "facelint-dashboard.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd + (["--allow-file-actions"] if flag else []),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(proc, port, log_path)
            with browser_page(browser) as page:
                page.goto(f"http://127.0.0.1:{port}/pairs", wait_until="domcontentloaded")
                wait_for_focus(page)
                move = page.get_by_role("button", name="move to the right folder")
                if flag:
                    expect(move.first).to_be_visible()
                else:
                    expect(page.get_by_text("File actions are off").first).to_be_visible()
                    assert move.count() == 0
        finally:
            _stop(proc)


def test_search_by_photo_upload_shows_that_persons_faces_first(
    dashboard_url, dev_copy_loose, tmp_path, browser
):
    """The upload box runs `facelint search --json` in a subprocess and shows faces."""
    from PIL import Image, ImageOps
    from playwright.sync_api import expect

    root, _ = dev_copy_loose
    photo = tmp_path / "flipped.jpg"
    with Image.open(root / "Anthony_Hopkins" / "Anthony_Hopkins_0001.jpg") as im:
        ImageOps.mirror(im.convert("RGB")).save(photo, quality=90)
    with browser_page(browser) as page:
        page.goto(dashboard_url + "search", wait_until="domcontentloaded")
        page.locator('input[type="file"]').set_input_files(str(photo))
        expect(page.get_by_text("1 face(s) in the photo")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("your photo")).to_be_visible(timeout=30_000)
        _loaded_images(page, 6)
        captions = _captions(page)
        # Your photo, then the nearest faces by score, best first.
        assert captions[0] == "your photo"
        names = page.locator("strong").all_inner_texts()
        assert names[0] == "Anthony_Hopkins", names[:3]


@pytest.mark.slow
def test_facelint_up_allow_file_actions_reaches_the_app(dev_copy, tmp_path, browser):
    """Issue 9, defect 4, for `facelint up`: the daemon and the dashboard, one flag."""
    from playwright.sync_api import expect

    from tests.daemon_harness import DaemonProcess

    root, db = dev_copy
    port = _free_port()
    command = ["up", str(root), "--db", str(db), "--port", str(port), "--allow-file-actions"]
    d = DaemonProcess(root, db, tmp_path, command=command)
    try:
        d.wait_ready()
        _wait_healthy(d.proc, port, d.log_path)
        with browser_page(browser) as page:
            page.goto(f"http://127.0.0.1:{port}/pairs", wait_until="domcontentloaded")
            wait_for_focus(page)
            move = page.get_by_role("button", name="move to the right folder")
            expect(move.first).to_be_visible()
        assert d.terminate() == 0
    finally:
        d.close()


# -- the review queue of suggested mistakes (issue 7, item 4) --------------------------------

MISTAKE = '[class*="st-key-qcard-mistakes-"]'


def _wait_until(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def _listing(root: Path, klass: str) -> list[str]:
    folder = root / klass
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _suggestion_state(db: Path, sid: str) -> str | None:
    from store import suggestions

    with open_store(db, read_only=True, timeout=10) as con:
        found = suggestions.get(con, sid)
    return None if found is None else found.state


def test_merge_by_keyboard_moves_the_folder_and_undo_moves_it_back(dev_copy, run_scan, browser):
    """With file actions on: A on the focused Biden card merges Joe_Biden into the larger
    Joseph_Biden on disk and the suggestion leaves the queue (accepted in the store); U
    moves every file back and the suggestion is open again."""
    from playwright.sync_api import expect

    root, db = dev_copy
    # A stranger planted too (Anthony Hopkins's photo in Michael Caine's folder, no folder
    # of his own), so the queue holds more than the card decided here.
    (root / "Anthony_Hopkins" / "Anthony_Hopkins_0001.jpg").rename(
        root / "Michael_Caine" / "Anthony_Hopkins_0001.jpg"
    )
    shutil.rmtree(root / "Anthony_Hopkins")
    run_scan(root, db)
    before = {k: _listing(root, k) for k in ("Joe_Biden", "Joseph_Biden")}
    merged = sorted(before["Joe_Biden"] + before["Joseph_Biden"])
    with open_store(db, read_only=True, timeout=10) as con:
        row = con.execute(
            "SELECT id FROM suggestions WHERE class_a = 'Joe_Biden' AND class_b = 'Joseph_Biden'"
        ).fetchone()
    assert row is not None
    sid = str(row[0])
    card_class = "st-key-qcard-mistakes-" + sid.replace(":", "-")
    with (
        serving(db, root, "--allow-file-actions", "--page-size", "3") as url,
        browser_page(browser) as page,
    ):
        page.goto(url, wait_until="domcontentloaded")
        # The landing page is the queue; the best suggestion holds the keyboard focus.
        page.wait_for_function(
            "c => document.activeElement && document.activeElement.closest('.' + c)",
            arg=card_class,
            timeout=60_000,
        )
        expect(page.get_by_role("button", name="merge folders").first).to_be_visible()
        page.keyboard.press("a")
        _wait_until(
            lambda: not (root / "Joe_Biden").exists() and _listing(root, "Joseph_Biden") == merged,
            "Joe_Biden's files moved into Joseph_Biden",
        )
        _wait_until(lambda: _suggestion_state(db, sid) == "accepted", "the merge recorded")
        # The card collapses to its decision: no buttons left in it.
        page.wait_for_function(
            """c => { const el = document.getElementsByClassName(c)[0];
                      return el && !el.querySelector('button'); }""",
            arg=card_class,
            timeout=30_000,
        )
        expect(page.get_by_text("merge folders — Joe_Biden / Joseph_Biden")).to_be_visible()
        page.keyboard.press("u")
        _wait_until(
            lambda: {k: _listing(root, k) for k in before} == before, "every file moved back"
        )
        _wait_until(lambda: _suggestion_state(db, sid) == "open", "the suggestion reopened")
        # Back in the queue, with its buttons and the focus.
        page.wait_for_function(
            "c => document.activeElement && document.activeElement.closest('.' + c)",
            arg=card_class,
            timeout=30_000,
        )
        # The confidence sits under the card's buttons, where no tooltip covers it.
        assert page.evaluate(_CONFIDENCE_UNDER_THE_BUTTONS, card_class)
        # More mistakes for two pages of three: copies in other folders (duplicates) and
        # a misfiled photo, stored by a scan beside the running dashboard; a new visit.
        for src, dst in (
            ("Penny/penny1.png", "Raj"),
            ("Amy/amy1.png", "Howard"),
            ("Leonard/leonard1.png", "Stuart"),
        ):
            shutil.copy2(root / src, root / dst / Path(src).name)
        (root / "Barack_Obama" / "obama1.jpg").rename(root / "Sheldon" / "obama1.jpg")
        run_scan(root, db)
        page.reload(wait_until="domcontentloaded")
        page.wait_for_function(
            f"document.activeElement && document.activeElement.closest('{MISTAKE}')",
            timeout=60_000,
        )
        _keys_reach_every_open_card(page, db)


# Whether, in the card, the confidence line starts below its last button.
_CONFIDENCE_UNDER_THE_BUTTONS = """c => {
    const card = document.getElementsByClassName(c)[0];
    const buttons = [...card.querySelectorAll('button')];
    const conf = [...card.querySelectorAll('p')].find(p => p.innerText.startsWith('confidence'));
    const lowest = Math.max(...buttons.slice(0, -1).map(b => b.getBoundingClientRect().bottom));
    return !!conf && conf.getBoundingClientRect().top >= lowest - 1;
}"""


def _focused_mistake(page: Page) -> str | None:
    return page.evaluate(
        f"""() => {{
            const c = document.activeElement && document.activeElement.closest('{MISTAKE}');
            if (!c) return null;
            const k = [...c.classList].find(x => x.startsWith('st-key-qcard-mistakes-'));
            return k.slice('st-key-qcard-mistakes-'.length);
        }}"""
    )


def _press_until(page: Page, key: str, want: str) -> None:
    page.keyboard.press(key)
    page.wait_for_function(
        f"""w => {{
            const a = document.activeElement;
            const c = a && a.closest('{MISTAKE}');
            return !!c && c.classList.contains('st-key-qcard-mistakes-' + w) && !a.disabled;
        }}""",
        arg=want,
        timeout=30_000,
    )


def _keys_reach_every_open_card(page: Page, db: Path) -> None:
    """Pages of three cards: decide out of order (J, skip, K past the skipped card, reject),
    then K and J at the page's edges, and J alone walks every open card left, across
    pages, each once and in the queue's order."""
    from store import suggestions

    with open_store(db, read_only=True, timeout=10) as con:
        ids = [s.id for s in suggestions.queue(con, "open", (), 100)]
    order = [sid.replace(":", "-") for sid in ids]
    assert len(order) >= 6, order  # two pages of three, and more
    assert _focused_mistake(page) == order[0]
    _press_until(page, "j", order[1])
    _press_until(page, "x", order[2])  # skip card 2: the focus moves on to card 3
    _press_until(page, "k", order[0])  # back past the skipped card
    _press_until(page, "d", order[2])  # reject card 1: on to card 3
    page.keyboard.press("k")  # no open card before it, no page before this one
    _press_until(page, "j", order[3])  # J turns the page: its first card
    _press_until(page, "k", order[2])  # K turns it back: the card before
    for card in order[3:]:
        _press_until(page, "j", card)
    assert [_suggestion_state(db, sid) for sid in ids[:3]] == ["rejected", "skipped", "open"]


def test_a_mixed_card_moves_exactly_the_foreign_photos_and_undo_moves_them_back(
    dev_copy, run_scan, browser
):
    """Issue 14: a namesake planted (three of Sheldon's photos in Anthony Hopkins's
    folder); the mixed card's "move group" moves exactly those three into Sheldon's
    folder, and U moves them back."""
    from playwright.sync_api import expect

    root, db = dev_copy
    foreign = [f"sheldon{i}.png" for i in (1, 2, 3)]
    for name in foreign:
        (root / "Sheldon" / name).rename(root / "Anthony_Hopkins" / name)
    run_scan(root, db)
    before = {k: _listing(root, k) for k in ("Anthony_Hopkins", "Sheldon")}
    with open_store(db, read_only=True, timeout=10) as con:
        row = con.execute("SELECT id FROM suggestions WHERE kind = 'mixed'").fetchone()
    assert row is not None
    sid = str(row[0])
    card_class = "st-key-qcard-mistakes-" + sid.replace(":", "-")
    with serving(db, root, "--allow-file-actions") as url, browser_page(browser) as page:
        page.goto(url, wait_until="domcontentloaded")
        card = page.locator("." + card_class)
        expect(card.get_by_text("Anthony_Hopkins holds 3 photos that match Sheldon")).to_be_visible(
            timeout=60_000
        )
        # The group's faces are on the card, and the folder it goes into.
        for name in foreign:
            expect(card.get_by_text(name, exact=True).first).to_be_visible()
        card.get_by_role("button", name="move group").click()
        _wait_until(
            lambda: (
                _listing(root, "Anthony_Hopkins")
                == sorted(set(before["Anthony_Hopkins"]) - set(foreign))
                and _listing(root, "Sheldon") == sorted(before["Sheldon"] + foreign)
            ),
            "the three photos moved into Sheldon, nothing else",
        )
        _wait_until(lambda: _suggestion_state(db, sid) == "accepted", "the move recorded")
        page.keyboard.press("u")
        _wait_until(
            lambda: {k: _listing(root, k) for k in before} == before, "the photos moved back"
        )
        _wait_until(lambda: _suggestion_state(db, sid) == "open", "the suggestion reopened")


# -- names with markdown and HTML in them (issue 16, item 9) ---------------------------------

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
    emphasis from them, and the browser asks 127.0.0.1:9 for nothing."""
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
    args = ("--allow-file-actions", "--status-file", str(status))
    with serving(db, root, *args) as url, browser_page(browser) as page:
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def visit(path: str, header: str, *literal: str) -> None:
            page.goto(url + path, wait_until="domcontentloaded")
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
        # A file action and its toast (one of the planted names moved), then the log.
        page.get_by_role("button", name="move to the right folder").first.click()
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


def test_a_foreign_host_is_refused_on_the_websocket_and_over_http(scanned_dev, tmp_path):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 opens the
    dashboard's websocket with Host and Origin both evil.example, so the same-origin check
    passes. The dashboard `facelint dashboard` serves refuses it by its Host."""
    from daemon.config import Settings
    from daemon.launch import dashboard_command

    root, db = scanned_dev
    port = _free_port()
    log_path = tmp_path / "dashboard.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            dashboard_command(Settings(root=root, db=db, port=port)),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_healthy(proc, port, log_path)
            for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
                assert _upgrade(port, host, f"http://{host}").split(" ")[1] == "101", host
            for host in ("evil.example", f"evil.example:{port}"):
                answer = _upgrade(port, host, f"http://{host}")
                assert answer.split(" ")[1] == "403", (host, answer)
            # Plain HTTP too: the page, a stored image's URL shape, the health route.
            for path in ("/", "/media/0.jpg", "/_stcore/health"):
                assert _get(port, path, "evil.example") == 400, path
            assert _get(port, "/", f"localhost:{port}") == 200
        finally:
            _stop(proc)


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
