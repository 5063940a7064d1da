"""What facelint prints and writes survives hostile names: CSV round trips, valid UTF-8."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from daemon.cli import main
from tests.conftest import DEV_FACES, REPO, scan

# Four folders of one man (Leonard's four crops): every cross-folder pair is stored, and
# every name carries a character CSV must quote.
HOSTILE = {
    "Leo\rnard": "a\rb.png",  # a bare carriage return: split rows with "\n" terminators
    "Leo\nnard": "c\nd.png",
    "Leo, nard": "e, f.png",
    'Leo "nard"': 'g "h".png',
}


def store_pairs(db: Path) -> set[tuple[str, str]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {(a, b) for a, b in con.execute("SELECT path_a, path_b FROM pairs").fetchall()}
    finally:
        con.close()


@pytest.fixture(scope="module")
def hostile_store(
    tmp_path_factory: pytest.TempPathFactory, seed_encodings: Callable[[Path], Path]
) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "data"
    for i, (folder, name) in enumerate(HOSTILE.items(), start=1):
        (root / folder).mkdir(parents=True)
        shutil.copy2(DEV_FACES / "Leonard" / f"leonard{i}.png", root / folder / name)
    db = seed_encodings(base / "facelint.duckdb")
    scan(root, db)
    assert len(store_pairs(db)) >= 4, "the four crops of one man should pair up"
    return db


def test_export_csv_round_trips_cr_lf_commas_and_quotes(hostile_store, tmp_path):
    out = tmp_path / "pairs.csv"
    assert main(["export", "--db", str(hostile_store), "--csv", str(out)]) == 0
    with out.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path_a", "path_b", "score"]
    assert all(len(r) == 3 for r in rows)
    assert {(a, b) for a, b, _ in rows[1:]} == store_pairs(hostile_store)


@pytest.mark.parametrize("command", ["top", "sql"])
def test_top_and_sql_csv_round_trip(hostile_store, capsys, command):
    args = ["-n", "100", "--all"] if command == "top" else ["SELECT path_a, path_b FROM pairs"]
    assert main([command, "--db", str(hostile_store), *args, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out, newline="")))
    header = rows[0]
    a, b = header.index("path_a"), header.index("path_b")
    assert all(len(r) == len(header) for r in rows)
    assert {(r[a], r[b]) for r in rows[1:]} == store_pairs(hostile_store)


def test_export_to_stdout_round_trips(hostile_store):
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "export", "--db", str(hostile_store), "--csv", "-"],
        capture_output=True,
        cwd=REPO,
        check=True,
    )
    rows = list(csv.reader(io.StringIO(proc.stdout.decode("utf-8"), newline="")))
    assert {(r[0], r[1]) for r in rows[1:]} == store_pairs(hostile_store)


def _bad_tree(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(DEV_FACES / "Penny", root / "Penny")
    shutil.copytree(DEV_FACES / "Amy", root / "Amy")
    # A name that is not UTF-8: bytes are how the file system hands it over.
    bad = os.fsencode(root / "Penny") + b"/bad\xffname.jpg"
    with open(bad, "wb") as fh:
        fh.write((DEV_FACES / "Penny" / "penny1.png").read_bytes())
    return root


@pytest.mark.parametrize(
    ("args", "encoding"),
    [
        (["--json"], "utf-8"),
        ([], "utf-8"),
        (["--json"], "ascii"),  # a C locale
        ([], "ascii"),
    ],
)
def test_scan_output_with_a_non_utf8_name_is_valid(tmp_path, seed_encodings, args, encoding):
    root = _bad_tree(tmp_path)
    env = dict(os.environ, PYTHONIOENCODING=encoding, FACELINT_CONFIG=str(tmp_path / "none"))
    # What is printed is under test, not the encoding: the dev faces' encodings are reused.
    db = seed_encodings(tmp_path / "s.db")
    command = [sys.executable, "-m", "daemon.cli", "scan", str(root), "--db", str(db)]
    proc = subprocess.run(
        [*command, "--workers", "1", *args],
        capture_output=True,
        cwd=REPO,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    out = proc.stdout.decode(encoding)  # raises on invalid output
    proc.stderr.decode(encoding)
    # One escaping everywhere: the undecodable byte as Python's backslash escape.
    if args:
        data = json.loads(out)
        assert {"path": "Penny/bad\\xffname.jpg", "reason": "file name is not valid UTF-8"} in (
            data["skipped"]
        )
        assert data["images"] == 10
    else:
        assert "skipped: Penny/bad\\xffname.jpg: file name is not valid UTF-8" in out
        assert out.startswith("10 images")


# -- issue 16, item 11: what a terminal would obey is shown, never obeyed ------------------

# A name that clears the screen, one that returns to the line's start and overprints it,
# a folder that sets the terminal's title, one that reverses what follows.
OBEYED = {
    "Leonard": ["a\x1b[2J.png", "b\rALL CLEAN.png"],
    "Leo\x1b]0;pwned\x07nard": ["c.png"],
    "Leo\u202enard": ["d.png"],
}


@pytest.fixture(scope="module")
def obeyed_store(
    tmp_path_factory: pytest.TempPathFactory, seed_encodings: Callable[[Path], Path]
) -> Path:
    base = tmp_path_factory.mktemp("obeyed")
    root = base / "data"
    crops = iter(range(1, 5))
    for folder, names in OBEYED.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            shutil.copy2(DEV_FACES / "Leonard" / f"leonard{next(crops)}.png", root / folder / name)
    db = seed_encodings(base / "facelint.duckdb")
    scan(root, db)
    assert len(store_pairs(db)) >= 3, "Leonard's crops should pair up across folders"
    return db


def _raw_controls(text: str) -> list[str]:
    return [
        ch
        for ch in text
        if (ord(ch) < 0x20 and ch != "\n") or 0x7F <= ord(ch) < 0xA0 or ch == "\u202e"
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["top", "-n", "100", "--all"],
        ["sql", "SELECT path, class FROM images ORDER BY path"],
        ["sql", 'SELECT path AS "x\x1b[2Jy" FROM images'],
    ],
)
def test_tables_show_control_characters_escaped(obeyed_store, capsys, args):
    assert main([args[0], "--db", str(obeyed_store), *args[1:]]) == 0
    out = capsys.readouterr().out
    assert _raw_controls(out) == []
    assert "a\\x1b[2J.png" in out and "b\\rALL CLEAN.png" in out
    if "class" in args[-1] or args[0] == "top":
        assert "Leo\\x1b]0;pwned\\x07nard" in out and "Leo\\u202enard" in out


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_keep_the_exact_names(obeyed_store, capsys, fmt):
    assert main(["sql", "--db", str(obeyed_store), "--format", fmt, "SELECT path FROM images"]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        paths = {r["path"] for r in json.loads(out)}
    else:
        paths = {r[0] for r in list(csv.reader(io.StringIO(out, newline="")))[1:]}
    assert paths == {f"{folder}/{name}" for folder, names in OBEYED.items() for name in names}


def _status_file(db: Path, **fields: object) -> None:
    import time

    from daemon.common.statusfile import write_status
    from daemon.config import Settings

    write_status(
        Settings(db=db).status_path(),
        {
            "heartbeat": time.time(),
            "pid": os.getpid(),
            "state": "encoding",
            "queue": 7,
            "images": 40,
            "pairs": 9,
            **fields,
        },
    )


def test_status_on_a_corrupt_store_shows_the_daemon_and_says_the_store(tmp_path, capsys):
    db = tmp_path / "facelint.duckdb"
    db.write_bytes(b"this is not a DuckDB file, and never was " * 200)
    _status_file(db, message="moved Leonard/a\x1b[2J.png")
    assert main(["status", "--db", str(db)]) == 4
    captured = capsys.readouterr()
    out = captured.out
    assert "encoding" in out and "queue" in out and "7" in out, out
    assert "STORE ERROR" in out and "cannot be read" in out, out
    assert "a\\x1b[2J.png" in out and _raw_controls(out) == []
    assert "Traceback" not in captured.err
    assert main(["status", "--db", str(db), "--json"]) == 4
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "encoding" and data["queue"] == 7 and data["running"] is True
    assert data["store_error"] is True and "cannot be read" in data["store_message"]
    assert data["images"] == 40  # the daemon's last totals, from its file


def test_status_on_a_foreign_duckdb_file_says_so(tmp_path, capsys):
    db = tmp_path / "facelint.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE something_else (x INTEGER)")
    con.close()
    _status_file(db)
    assert main(["status", "--db", str(db)]) == 4
    out = capsys.readouterr().out
    assert "encoding" in out and "cannot be read" in out, out


def test_table_widths_are_measured_on_what_the_terminal_shows():
    """An NFD name's combining marks take no column; wide characters take two."""
    import unicodedata

    from daemon.cli import _pad, _width

    nfc = "長谷川ガク"
    nfd = unicodedata.normalize("NFD", nfc)
    assert len(nfd) > len(nfc)
    assert _width(nfc) == _width(nfd) == 10
    assert _width("ｽｽﾞｷ") == 4 and _width("Joe_Biden") == 9
    assert _pad(nfd, 12) == nfd + "  "
