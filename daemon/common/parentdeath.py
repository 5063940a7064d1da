"""Children that end with their parent, however the parent ends (kill -9 too).

On Linux the kernel sends a signal to a process when its parent dies (prctl
PR_SET_PDEATHSIG). The encoder workers ask for it in their initializer; a child started
with `subprocess.Popen` (the dashboard beside `facelint up`) asks for it between fork and
exec, through `preexec_fn=pass_on_death()`, and keeps it across the exec.

The kernel's "parent" is the thread that forked: start such children from a thread that
lives as long as the process (the main thread), or they die with that thread.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up once, in the parent: a forked child of a threaded parent should do as little
# as possible before exec.
_prctl = _load_prctl()


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> bool:
    """In a child: ask for `sig` when the parent dies; end now if `parent` (its pid) is
    already gone (it died before the request). False where the kernel cannot do it (not
    Linux): the caller watches os.getppid() itself."""
    done = _prctl is not None and _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
    return done


def pass_on_death(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` for subprocess.Popen: the child gets `sig` when this process ends."""
    parent = os.getpid()

    def preexec() -> None:
        die_with_parent(parent, sig)

    return preexec
