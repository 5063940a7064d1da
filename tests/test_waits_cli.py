"""The CLI's small things: Ctrl-C on the daemon (and so on `facelint up`) exits 130, and
README says how to call `facelint` after its first command."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from daemon.config import Settings
from daemon.service import run_service

README = Path(__file__).resolve().parent.parent / "README.md"


def test_sigint_stops_the_daemon_with_exit_code_130(tmp_path):
    """The real signal, delivered to this process while run_service (what `facelint
    daemon` and `facelint up` run) serves an empty root; SIGTERM stays a clean 0
    (tests/test_daemon.py, tests/test_up.py)."""
    root = tmp_path / "data"
    root.mkdir()
    settings = Settings(root=root, db=tmp_path / "f.duckdb", workers=1, temp_sensor="")
    status = settings.status_path()

    def interrupt_once_idle() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if json.loads(status.read_text(encoding="utf-8")).get("state") == "idle":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    killer = threading.Thread(target=interrupt_once_idle, daemon=True)
    try:
        killer.start()
        code = run_service(settings)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        killer.join(5)
    assert code == 130
    assert json.loads(status.read_text(encoding="utf-8"))["state"] == "stopped"


def test_readme_says_how_to_call_facelint_after_its_first_command():
    text = README.read_text(encoding="utf-8")
    first = re.findall(r"```sh\n(.*?)```", text, re.S)[0].strip()
    # The first command installs into .venv and calls it from there ...
    assert first.endswith(".venv/bin/facelint up")
    after = text[text.index(first) :]
    bare = re.search(r"(?m)(?<![/\w])facelint (status|scan|search|top|dashboard)\b", after)
    assert bare is not None
    # ... and before README first writes a bare `facelint ...`, it says how that works.
    before_bare = after[: bare.start()]
    assert "source .venv/bin/activate" in before_bare
    assert ".venv/bin/facelint status" in before_bare
    # What it says is true of an install: the command sits beside the venv's python,
    # where activate puts it on PATH.
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "facelint").is_file()
    if (bin_dir / "activate").is_file():
        assert "PATH" in (bin_dir / "activate").read_text(encoding="utf-8")


def test_facelint_status_after_a_scan_says_when_the_last_reconcile_was(dev_copy, capsys):
    """No daemon ever ran on this store (no status file): the store's last full scan is
    the last reconcile, shown as an age, never "never"."""
    from daemon import cli

    _, db = dev_copy
    assert cli.main(["status", "--db", str(db)]) == 0
    rows = dict(
        (line[:18].strip(), line[18:].strip()) for line in capsys.readouterr().out.splitlines()
    )
    assert re.fullmatch(r"\d+ (s|min) ago", rows["last reconcile"]), rows
