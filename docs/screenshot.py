"""Regenerate docs/dashboard-pairs.png and docs/review-queue.png from the dev faces, in
real Chromium: the pairs page, and the review page (the queue of suggested mistakes).

    python docs/screenshot.py [--out docs/dashboard-pairs.png] [--review-out
        docs/review-queue.png] [--chromium /usr/bin/chromium]

Copies tests/faces (--faces) into a temp folder, scans it with `facelint scan`, serves the
dashboard with `streamlit run` on a free local port, and photographs it with Playwright
driving Debian's chromium (never `playwright install`: no downloads).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

REPO = Path(__file__).resolve().parent.parent
DEV_FACES = REPO / "tests" / "faces"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_store(faces: Path, work: Path) -> tuple[Path, Path]:
    root, db = work / "data", work / "facelint.duckdb"
    for folder in sorted(p for p in faces.iterdir() if p.is_dir()):
        shutil.copytree(folder, root / folder.name)
    scan(root, db)
    return root, db


def plant_mistakes(root: Path, db: Path) -> None:
    """The mistakes a real set has besides a split person (the dev faces hold one): a
    photo copied into another person's folder, and one filed under the wrong person."""
    shutil.copy2(root / "Penny" / "penny1.png", root / "Raj" / "penny1.png")
    (root / "Barack_Obama" / "obama1.jpg").rename(root / "Sheldon" / "obama1.jpg")
    scan(root, db)


def scan(root: Path, db: Path) -> None:
    work = db.parent
    subprocess.run(
        [sys.executable, "-m", "daemon.cli", "scan", str(root), "--db", str(db)],
        check=True,
        cwd=work,
        capture_output=True,
    )


def serve(db: Path, root: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """The dashboard as `facelint dashboard` would start it; wait until it is healthy."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "dashboard" / "serve.py"),
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
            "--",
            "--db",
            str(db),
            "--root",
            str(root),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {err[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("streamlit did not answer /_stcore/health within 60 s")


def wait_for_images(page: Page, count: int) -> None:
    page.wait_for_function(
        """n => {
            const imgs = Array.from(document.querySelectorAll('[data-testid="stImage"] img'));
            return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0);
        }""",
        arg=count,
        timeout=60_000,
    )


def shoot(chromium: str, url: str, out: Path, images: int, height: int = 1000) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": height})
        page.goto(url, wait_until="domcontentloaded")
        # The queue is ready when the first card holds the keyboard focus.
        page.wait_for_function(
            """document.activeElement
               && document.activeElement.closest('[class*="st-key-qcard-"]')""",
            timeout=60_000,
        )
        wait_for_images(page, images)
        page.wait_for_timeout(500)  # let the last layout settle
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "dashboard-pairs.png")
    ap.add_argument("--review-out", type=Path, default=REPO / "docs" / "review-queue.png")
    ap.add_argument("--faces", type=Path, default=DEV_FACES)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="facelint-shot-") as tmp:
        root, db = build_store(args.faces, Path(tmp))
        for step in ("pairs", "review"):
            if step == "review":
                plant_mistakes(root, db)
            port = free_port()
            server = serve(db, root, port, "--allow-file-actions", "--page-size", "5")
            try:
                if step == "pairs":
                    shoot(args.chromium, f"http://127.0.0.1:{port}/pairs", args.out, 8)
                else:
                    # Tall enough for a card of each kind the dev faces hold.
                    shoot(args.chromium, f"http://127.0.0.1:{port}/", args.review_out, 20, 1500)
            finally:
                server.terminate()
                server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
