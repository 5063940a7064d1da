"""A progress bar on a terminal, periodic log lines elsewhere (journald, CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, enabled: bool = True, every: float = 10.0):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.every = every
        self._label = ""
        self._total = 0
        self._done = 0
        self._start = 0.0
        self._last = 0.0

    def start(self, label: str, total: int) -> None:
        self._label, self._total, self._done = label, total, 0
        self._start = self._last = time.monotonic()
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self._done += n
        self._draw()

    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self._done / elapsed if elapsed > 0 else 0.0

    def finish(self) -> None:
        self._draw(force=True)
        if self.enabled and self.tty and self._total:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or not self._total:
            return
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.tty else self.every):
            return
        self._last = now
        rate = self.rate()
        left = (self._total - self._done) / rate if rate > 0 else 0.0
        frac = self._done / self._total
        text = (
            f"{self._label} {self._done}/{self._total} ({frac:5.1%}) "
            f"{rate:.1f}/s, {left:.0f} s left"
        )
        if self.tty:
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r[{bar:<30}] {text}\033[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
