"""Settings: defaults, TOML file, environment, flags, and clear errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from daemon.config import ConfigError, Settings, load_settings


def test_defaults_work_out_of_the_box(tmp_path):
    s = load_settings(tmp_path / "absent.toml" if False else None, env={})
    assert s.root == Path("data") and s.db == Path("facelint.duckdb")
    assert s.threshold == 0.4 and s.temp_limit == 72.0


def test_precedence_file_then_env_then_flags(tmp_path):
    cfg = tmp_path / "facelint.toml"
    cfg.write_text('[facelint]\nthreshold = 0.5\nroot = "/srv/faces"\nnum_jitters = 3\n')
    s = load_settings(cfg, env={"FACELINT_THRESHOLD": "0.6"})
    assert s.threshold == 0.6 and s.root == Path("/srv/faces") and s.num_jitters == 3
    s = s.with_overrides(threshold=0.7, root=None)
    assert s.threshold == 0.7 and s.root == Path("/srv/faces")
    assert s.status_path() == Path("facelint.duckdb.status.json")


def test_bad_settings_are_named(tmp_path):
    cfg = tmp_path / "facelint.toml"
    cfg.write_text("threshhold = 0.5\n")
    with pytest.raises(ConfigError, match="unknown setting 'threshhold'"):
        load_settings(cfg, env={})
    with pytest.raises(ConfigError, match="threshold"):
        load_settings(None, env={"FACELINT_THRESHOLD": "high", "FACELINT_CONFIG": "/nonexistent"})
    with pytest.raises(ConfigError, match="temp_resume"):
        Settings().with_overrides(temp_resume=80.0)
    cfg.write_text("this is = not [toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})


# -- one model: every choice and rule on it, every process reading it ---------------------

# A value for every setting, none of them its default: a new setting must be added here,
# and then it is proven to travel from the launcher to the dashboard unchanged.
EVERY_SETTING = {
    "root": "/srv/フェイス",
    "db": "/srv/store.duckdb",
    "status_file": "/run/facelint/status.json",
    "threshold": 0.55,
    "max_pairs_per_image": 7,
    "backend": "numpy",
    "candidates": "exact",
    "model": "arcface",
    "num_jitters": 2,
    "detector": "scrfd",
    "max_faces": 2,
    "min_face_px": 30,
    "detect_max_side": 800,
    "max_pixels": 1_000_000,
    "workers": 3,
    "ray_address": "ray://head:10001",
    "index_shards": 3,
    "onnx_model": "/models/own.onnx",
    "onnx_input_size": 112,
    "onnx_alignment": "chip",
    "onnx_normalise": "imagenet",
    "onnx_channels": "bgr",
    "extensions": (".png", ".tif"),
    "lock_timeout": 30.0,
    "read_wait": 2.5,
    "daemon_store_wait": 7.0,
    "quiet_seconds": 0.5,
    "batch_max": 16,
    "reconcile_minutes": 5.0,
    "poll": True,
    "poll_seconds": 0.25,
    "temp_limit": -1.5,
    "temp_resume": -10.0,
    "temp_sensor": "-coretemp:Package id 0",
    "temp_check_seconds": 1.0,
    "allow_empty": True,
    "port": 8600,
    "address": "0.0.0.0",
    "allowed_hosts": ("review.lan", "*.example.org"),
    "allow_file_actions": True,
    "quarantine": "trash",
    "user": "reviewer one",
    "page_size": 25,
    "page_lock_timeout": 0.5,
}


def test_every_setting_reaches_the_dashboard_exactly():
    from daemon.config import settings_argv, settings_from_argv
    from daemon.launch import dashboard_command
    from dashboard.settings import parse_args

    assert set(EVERY_SETTING) == set(Settings.model_fields)
    s = Settings(**EVERY_SETTING)
    assert all(getattr(s, k) != getattr(Settings(), k) for k in EVERY_SETTING)
    assert settings_from_argv(settings_argv(s)) == s
    cmd = dashboard_command(s)
    assert parse_args(cmd[cmd.index("--") + 1 :]) == s
    assert settings_argv(Settings()) == []


def test_the_launcher_hands_the_dashboard_what_it_resolved_from_file_and_environment(tmp_path):
    from daemon.launch import dashboard_command
    from dashboard.settings import parse_args

    cfg = tmp_path / "facelint.toml"
    cfg.write_text('page_size = 20\nquarantine = "bin"\nuser = "ann"\n', encoding="utf-8")
    s = load_settings(cfg, env={"FACELINT_PAGE_LOCK_TIMEOUT": "1.5", "FACELINT_DB": "x.duckdb"})
    cmd = dashboard_command(s.with_overrides(allow_file_actions=True))
    got = parse_args(cmd[cmd.index("--") + 1 :])
    assert (got.page_size, got.quarantine, got.user) == (20, "bin", "ann")
    assert got.page_lock_timeout == 1.5
    assert got.allow_file_actions and got.db == Path("x.duckdb").absolute()
    assert got.status_path() == Path("x.duckdb.status.json").absolute()
    assert got.lock_timeout == 600.0


def test_building_settings_reads_nothing_loading_them_reads_file_and_environment(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "facelint.toml").write_text("[facelint]\nthreshold = 0.5\n", encoding="utf-8")
    monkeypatch.setenv("FACELINT_PAGE_SIZE", "30")
    monkeypatch.setenv("FACELINT_PORT", "")  # empty: unset
    assert Settings().threshold == 0.4 and Settings().page_size == 10
    s = load_settings()
    assert (s.threshold, s.page_size, s.port) == (0.5, 30, 8501)


def test_two_lock_waits_are_two_settings():
    s = Settings()
    assert (s.lock_timeout, s.page_lock_timeout) == (600.0, 3.0)
    with pytest.raises(ConfigError, match="page_lock_timeout"):
        Settings(page_lock_timeout=0)


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("quarantine", "trash/bin", "plain folder name"),
        ("quarantine", "..", "plain folder name"),
        ("model", "facenet", "'dlib' or 'arcface'"),
        ("detector", "fast", "'auto', 'hog', 'cnn' or 'scrfd'"),
        ("onnx_channels", "rgba", "'rgb' or 'bgr'"),
        ("threshold", "0", "greater than 0"),
        ("page_size", "101", "less than or equal to 100"),
        ("extensions", "png,.jpg", "must start with '.'"),
        ("allow_file_actions", "perhaps", "valid boolean"),
        ("ray_address", "head :6379", "not a Ray address"),
    ],
)
def test_every_rule_is_the_models_wherever_the_value_comes_from(tmp_path, name, value, why):
    cfg = tmp_path / "facelint.toml"
    cfg.write_text(f'[facelint]\n{name} = "{value}"\n', encoding="utf-8")
    where = re.escape(str(cfg))
    with pytest.raises(ConfigError, match=rf"setting '{name}' \(from {where}\): .*{why}"):
        load_settings(cfg, env={})
    env = {"FACELINT_" + name.upper(): value}
    with pytest.raises(ConfigError, match=rf"setting '{name}' \(from FACELINT_.*{why}"):
        load_settings(None, env=env | {"FACELINT_CONFIG": str(tmp_path / "none.toml")})
    from dashboard.settings import SettingsError, parse_args

    if Settings.model_fields[name].annotation is bool:
        return  # a switch after the dashboard's `--`: --allow-file-actions, no value
    with pytest.raises(SettingsError, match=rf"setting '{name}' \(from --.*{why}"):
        parse_args([f"--{name.replace('_', '-')}={value}"])


def test_a_bad_value_in_file_environment_or_flag_exits_2_naming_the_setting(
    tmp_path, monkeypatch, capsys
):
    from daemon.cli import main

    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("FACELINT_")]:
        monkeypatch.delenv(key)
    (tmp_path / "facelint.toml").write_text('quarantine = "trash/bin"\n', encoding="utf-8")
    assert main(["status"]) == 2
    assert "setting 'quarantine' (from facelint.toml)" in capsys.readouterr().err
    (tmp_path / "facelint.toml").unlink()
    monkeypatch.setenv("FACELINT_TEMP_LIMIT", "hot")
    assert main(["status"]) == 2
    assert "setting 'temp_limit' (from FACELINT_TEMP_LIMIT)" in capsys.readouterr().err
    monkeypatch.delenv("FACELINT_TEMP_LIMIT")
    assert main(["scan", "--threshold", "1.5", str(tmp_path)]) == 2
    assert "setting 'threshold'" in capsys.readouterr().err
    assert main(["dashboard", "--quarantine", "a/b"]) == 2
    assert "setting 'quarantine'" in capsys.readouterr().err


def test_cli_flags_take_their_help_choices_and_defaults_from_the_model():
    import argparse

    from daemon.cli import build_parser
    from daemon.config import choices, default_text, flag_help

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = set()
    for command in sub.choices.values():
        for action in command._actions:
            if action.dest not in Settings.model_fields or action.help == argparse.SUPPRESS:
                continue
            seen.add(action.dest)
            assert action.help == flag_help(action.dest)
            assert f"(default: {default_text(action.dest)})" in action.help
            assert action.default is None  # unset unless given: the file or env holds
            assert action.choices in (None, choices(action.dest))
    assert {"root", "db", "threshold", "model", "port", "quarantine", "allow_empty"} <= seen
    text = sub.choices["scan"].format_help()
    assert "(default: 0.4)" in text and "{dlib,arcface}" in text
