"""The settings of this dashboard process: facelint's one model (daemon/config.py), built
from the arguments Streamlit passes after `--`.

`facelint dashboard` and `facelint up` (daemon/launch.py) resolve the settings — defaults,
facelint.toml, FACELINT_*, flags — and pass every value that differs from a default as
`--<name>` after `--`. The dashboard reads nothing else (no file, no environment), so it
sees exactly the settings its launcher resolved, whoever started it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from daemon.config import ConfigError, Settings, settings_from_argv

# The one model and its error, by the names the dashboard's modules have always used.
DashboardSettings = Settings
SettingsError = ConfigError


def parse_args(argv: Sequence[str]) -> Settings:
    return settings_from_argv(argv)


def current() -> Settings:
    """This dashboard's settings, from the arguments Streamlit was started with. Each page
    script asks again (cheap): Streamlit runs pages as scripts, nothing is passed in."""
    return parse_args(sys.argv[1:])
