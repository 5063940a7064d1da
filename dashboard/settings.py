"""The dashboard's settings: the command-line arguments Streamlit passes after `--`.

The dashboard reads nothing else (no config file, no daemon module): `facelint dashboard`
(daemon/launch.py) turns facelint's settings into these arguments.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """The arguments cannot be used; the message says which and why."""


@dataclass(frozen=True)
class DashboardSettings:
    db: Path
    root: Path
    status_file: Path
    quarantine: str
    allow_file_actions: bool
    user: str
    # Seconds a page waits for the store's lock before it says "store busy".
    lock_timeout: float
    page_size: int


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # A container's uid may have no passwd entry.
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def check_folder_name(name: str, what: str) -> str:
    """`name` as one plain folder name, or SettingsError: no separators, no `..`."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name.startswith(".")
    ):
        raise SettingsError(f"{what} {name!r} must be a plain folder name inside the data root")
    return name


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamlit run dashboard/app.py --",
        description="facelint's review dashboard",
        exit_on_error=False,
        add_help=False,
    )
    p.add_argument("--db", type=Path, default=Path("facelint.duckdb"))
    p.add_argument("--root", type=Path, default=Path("data"))
    p.add_argument("--status-file", type=Path, default=None)
    p.add_argument("--quarantine", default="_quarantine")
    p.add_argument("--allow-file-actions", action="store_true")
    p.add_argument("--user", default=None)
    p.add_argument("--lock-timeout", type=float, default=3.0)
    p.add_argument("--page-size", type=int, default=10)
    return p


def parse_args(argv: Sequence[str]) -> DashboardSettings:
    try:
        ns, unknown = _parser().parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise SettingsError(str(exc)) from exc
    if unknown:
        raise SettingsError(f"unknown arguments: {' '.join(unknown)}")
    if ns.lock_timeout <= 0:
        raise SettingsError("--lock-timeout must be positive")
    if not 1 <= ns.page_size <= 100:
        raise SettingsError("--page-size must be between 1 and 100")
    db = Path(ns.db).expanduser()
    return DashboardSettings(
        db=db,
        root=Path(ns.root).expanduser(),
        status_file=Path(ns.status_file).expanduser()
        if ns.status_file
        else db.with_name(db.name + ".status.json"),
        quarantine=check_folder_name(ns.quarantine, "--quarantine"),
        allow_file_actions=bool(ns.allow_file_actions),
        user=ns.user or _default_user(),
        lock_timeout=float(ns.lock_timeout),
        page_size=int(ns.page_size),
    )


def current() -> DashboardSettings:
    """This dashboard's settings, from the arguments Streamlit was started with. Each page
    script asks again (cheap): Streamlit runs pages as scripts, nothing is passed in."""
    import sys

    return parse_args(sys.argv[1:])
