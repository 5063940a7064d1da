"""Settings: defaults, TOML file, environment, flags, and clear errors."""

from __future__ import annotations

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
