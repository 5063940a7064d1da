"""README.md is a user interface too: its commands and report queries must work."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

README = Path(__file__).resolve().parent.parent / "README.md"
CI = Path(__file__).resolve().parent.parent / ".ci" / "run"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_report_queries_run_against_a_real_store(scanned_dev):
    _, db = scanned_dev
    queries = blocks("sql")
    assert len(queries) >= 3
    con = duckdb.connect(str(db), read_only=True)
    try:
        results = [con.execute(q).fetchall() for q in queries]
    finally:
        con.close()
    queue, by_folder, no_face = results[:3]
    assert queue[0][0] == "same_person" and {queue[0][2], queue[0][3]} == {
        "Joe_Biden",
        "Joseph_Biden",
    }
    assert by_folder[0][:2] == ("Joe_Biden", "Joseph_Biden")
    assert ("no_face", "Charlton_Heston/pilatus800.jpg") in [r[:2] for r in no_face]


def test_ci_runs_the_readme_test_command():
    commands = blocks("sh")
    assert len(commands) >= 2
    test_command = commands[1].strip()
    assert test_command in CI.read_text(encoding="utf-8")
