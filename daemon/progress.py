"""Progress on a terminal (tqdm's bar) or as periodic log lines elsewhere (journald, CI
logs), from the pipeline's progress events."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from daemon.common.humanize import rate_and_eta, time_left
from daemon.runstats import ProgressEvent

log = logging.getLogger("facelint.progress")


class TerminalProgress:
    """Renders ProgressEvents: a bar per stage on a terminal, a log line every `every`
    seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, every: float = 10.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        self._bar: Any = None
        self._stage = ""
        self._last = 0.0
        self._started = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage != self._stage:
            self.close()
            self._stage = event.stage
            self._started = time.monotonic()
            if self.tty and event.total > 1:
                from tqdm import tqdm

                self._bar = tqdm(total=event.total, desc=event.stage, unit="img", file=self.stream)
        if self._bar is not None:
            self._bar.update(event.done - self._bar.n)
        elif event.total > 1:
            now = time.monotonic()
            if now - self._last >= self.every or event.done == event.total:
                self._last = now
                rate, left = rate_and_eta(event.done, event.total, now - self._started)
                log.info(
                    "%s %d/%d (%.1f/s, %s)",
                    event.stage,
                    event.done,
                    event.total,
                    rate,
                    "time left unknown" if left is None else time_left(left),
                )
        if event.done >= event.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._stage = ""
