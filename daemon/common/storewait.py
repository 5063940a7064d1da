"""Waits on the store said out loud: who holds it, and how long the waiter will wait.

Every process here opens the store for one unit of work and retries an open that meets
another process's lock (store/connection.py). A wait nobody sees looks like a hang, so
each waiter says, at its first retry, which process holds the store (the kernel's lock
table names the pid; the daemon's status file says when that pid is the daemon, and what
it is doing) and its own limit. Used by the CLI, the daemon and the dashboard; it reads
only /proc and the status file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from daemon.common.statusfile import read_status_file
from store.connection import LockHolder, describe_holders, lock_holders


def _name(holder: LockHolder, daemon_pid: int | None, daemon_state: str) -> str:
    command = holder.command
    if daemon_pid is not None and holder.pid == daemon_pid:
        # A holder is not waiting, whatever its last published state said.
        doing = f", {daemon_state}" if daemon_state and "wait" not in daemon_state else ""
        return f"the facelint daemon (pid {holder.pid}{doing})"
    if "streamlit" in command and "dashboard" in command:
        return f"the facelint dashboard (pid {holder.pid})"
    words = command.split()
    for i, word in enumerate(words[:3]):
        if word.rsplit("/", 1)[-1] == "facelint" or word == "daemon.cli":
            sub = next((w for w in words[i + 1 :] if not w.startswith("-")), "")
            return f"`facelint{' ' + sub if sub else ''}` (pid {holder.pid})"
    return str(holder)


def held_by(db: Path, status_path: Path | None = None) -> str:
    """ "held for writing by the facelint daemon (pid 12, encoding)", "read by `facelint
    status` (pid 40) and 1 other process"; "held by another process" when the kernel's
    lock table does not say (not Linux, the lock gone meanwhile)."""
    holders = lock_holders(db)
    daemon_pid: int | None = None
    daemon_state = ""
    if status_path is not None:
        status = read_status_file(status_path)
        if status.running:
            pid = status.fields.get("pid")
            daemon_pid = pid if isinstance(pid, int) else None
            daemon_state = str(status.fields.get("state") or "")
    if not holders and daemon_pid is not None:
        return f"held by another process (the facelint daemon, pid {daemon_pid}, is running)"
    return describe_holders(holders, lambda h: _name(h, daemon_pid, daemon_state))


def wait_note(db: Path, status_path: Path | None, limit: float, setting: str) -> str:
    """The sentence a waiter shows: the store, its holder, and this waiter's limit."""
    return (
        f"the store {db} is {held_by(db, status_path)}; waiting up to {limit:g} s "
        f"(`{setting}`) for it"
    )


class WaitReporter:
    """An `on_wait` for open_store that says the wait at its first retry (within a second
    of the first refusal, as the first retry comes after 25-75 ms), then again every
    `every` seconds with the time waited, through `say(text)`."""

    def __init__(
        self,
        db: Path,
        status_path: Path | None,
        limit: float,
        setting: str,
        say: Callable[[str], None],
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db, self.status_path, self.limit, self.setting = db, status_path, limit, setting
        self.say, self.every, self.clock = say, every, clock
        self._last: float | None = None
        # Seconds from the first refusal to the first word (tests, benchmarks).
        self.first_said_after: float | None = None
        self.last_note = ""
        self.longest = 0.0

    def __call__(self, waited: float, why: str) -> None:
        self.longest = max(self.longest, waited)
        now = self.clock()
        if self._last is not None and now - self._last < self.every:
            return
        note = wait_note(self.db, self.status_path, self.limit, self.setting)
        if self._last is not None:
            note += f" ({waited:.0f} s so far)"
        else:
            self.first_said_after = waited
        self._last = now
        self.last_note = note
        self.say(note)
