"""Issue 16, item 10: `facelint sql` reaches nothing outside the store. Each abuse the
hostile run found (COPY over a file, read_text and glob of files outside, EXPORT DATABASE,
INSTALL, ATTACH, a SET that turns access back on) is refused with exit code 4 and a
message, and leaves no file; README's reports and `--write` fixes still work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from daemon.cli import main
from tests.conftest import REPO

README = REPO / "README.md"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the store, with a secret in it."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("the secret", encoding="utf-8")
    (folder / "secret.csv").write_text("what\nthe secret\n", encoding="utf-8")
    return folder


def sql(db: Path, query: str, *flags: str) -> int:
    return main(["sql", "--db", str(db), *flags, query])


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("COPY (SELECT path FROM images) TO '{out}/copied.csv'", "COPY"),
        ("SELECT 1; COPY (SELECT 1) TO '{out}/copied.csv'", "COPY"),
        ("EXPORT DATABASE '{out}/exported'", "EXPORT DATABASE"),
        ("IMPORT DATABASE '{out}'", "IMPORT DATABASE"),
        ("INSTALL httpfs", "INSTALL"),
        ("FORCE INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "INSTALL and LOAD"),
        ("ATTACH '{out}/other.duckdb' AS other", "ATTACH"),
        ("ATTACH ':memory:' AS other", "ATTACH"),
        ("SET enable_external_access = true", "SET"),
        ("RESET lock_configuration", "SET"),
        ("SELECT 1; SET enable_external_access = true; FROM read_text('{out}/secret.txt')", "SET"),
        ("PRAGMA enable_external_access = true", "SET"),
        ("SET temp_directory = '{out}/spill'", "SET"),
        ("COPY FROM DATABASE memory TO other", "COPY FROM DATABASE"),
        ("UPDATE EXTENSIONS", "does not run"),
        ("PRAGMA import_database('{out}')", "PRAGMA"),
    ],
)
@pytest.mark.parametrize("write", [False, True])
def test_a_statement_reaching_outside_is_refused_by_kind(
    dev_copy, outside, capsys, query, said, write
):
    _, db = dev_copy
    before = sorted(p.name for p in outside.iterdir())
    code = sql(db, query.format(out=outside), *(["--write"] if write else []))
    err = capsys.readouterr().err
    assert code == 4, err
    assert "refused" in err and said in err and "Traceback" not in err, err
    assert sorted(p.name for p in outside.iterdir()) == before


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_text('{out}/secret.txt')",
        "SELECT content FROM read_blob('{out}/secret.txt')",
        "SELECT * FROM glob('{out}/*')",
        "SELECT * FROM read_csv('{out}/secret.txt')",
        "SELECT * FROM '{out}/secret.csv'",
        "SELECT * FROM glob('/root/*')",
        "SELECT * FROM read_text('/etc/passwd')",
    ],
)
def test_reading_a_file_outside_the_store_is_refused(dev_copy, outside, capsys, query):
    _, db = dev_copy
    assert sql(db, query.format(out=outside), "--format", "csv") == 4
    captured = capsys.readouterr()
    assert "the secret" not in captured.out and "secret." not in captured.out
    assert "refused" in captured.err and "outside the store" in captured.err, captured.err


def test_the_query_cannot_turn_the_settings_back(dev_copy, capsys):
    _, db = dev_copy
    for setting, value in [("enable_external_access", "false"), ("lock_configuration", "true")]:
        assert sql(db, f"SELECT current_setting('{setting}') AS v", "--format", "csv") == 0
        assert capsys.readouterr().out.lower().split() == ["v", value]


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "-- only a comment"])
def test_an_empty_query_is_exit_4_with_a_message(dev_copy, capsys, query):
    _, db = dev_copy
    assert sql(db, query) == 4
    err = capsys.readouterr().err
    assert "no query" in err or "no statement" in err
    assert "Traceback" not in err


def test_an_empty_query_from_the_shell_is_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "sql", "--db", str(tmp_path / "x.duckdb"), ""],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 4 and "no query given" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_readme_reports_run_through_facelint_sql(scanned_dev, capsys):
    _, db = scanned_dev
    queries = re.findall(r"```sql\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(queries) >= 4
    for query in queries:
        assert sql(db, query, "--format", "json") == 0, capsys.readouterr().err
        capsys.readouterr()
    assert sql(db, "PRAGMA table_info('pairs')", "--format", "csv") == 0
    assert "path_a" in capsys.readouterr().out
    assert sql(db, "DESCRIBE suggestions", "--format", "csv") == 0
    assert "reopened_why" in capsys.readouterr().out


def test_write_still_changes_the_store_with_access_off(dev_copy, outside, capsys):
    _, db = dev_copy
    assert sql(db, "UPDATE meta SET value = 'fixed' WHERE key = 'note'", "--write") == 0
    assert sql(db, "INSERT INTO meta VALUES ('note', 'by hand')", "--write") == 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT value FROM meta WHERE key = 'note'").fetchall() == [("by hand",)]
    finally:
        con.close()
    # Even with --write, nothing outside the store is read.
    query = f"INSERT INTO meta SELECT 'x', content FROM read_text('{outside}/secret.txt')"
    assert sql(db, query, "--write") == 4
    assert "refused" in capsys.readouterr().err
