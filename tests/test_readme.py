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


# -- the configuration list: made from the settings model ---------------------------------


def settings_table() -> str:
    """README's configuration list as the model (daemon/config.py) and the CLI's flags
    (daemon/cli.py) say it: one row per setting, its TOML default, flags and meaning."""
    import argparse

    from daemon.cli import build_parser
    from daemon.config import Settings, default_text

    flags: dict[str, set[str]] = {}
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices.values():
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue
            spelled = action.option_strings or [action.dest.upper()]
            flags.setdefault(action.dest, set()).update(spelled)
    rows = ["| setting | default | flag | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        shown = ", ".join(f"`{f}`" for f in sorted(flags.get(name, ()))) or "—"
        rows.append(
            f"| `{name}` | `{default_text(name, toml=True)}` | {shown} | {field.description} |"
        )
    return "\n".join(rows) + "\n"


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]


def test_readme_lists_every_setting_with_the_models_default_and_meaning():
    table = settings_table()
    assert table in configuration_section(), "README's Configuration table should be:\n" + table


def test_readme_configuration_example_is_valid(tmp_path):
    from daemon.config import load_settings

    (example,) = re.findall(r"```toml\n(.*?)```", configuration_section(), re.S)
    cfg = tmp_path / "facelint.toml"
    cfg.write_text(example, encoding="utf-8")
    s = load_settings(cfg, env={})
    assert s.threshold == 0.45 and s.page_lock_timeout == 3.0
