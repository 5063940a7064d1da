"""The systemd ``Type=notify`` protocol (sd_notify(3)), without libsystemd.

The protocol is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET``. Implementing it here keeps the daemon free of a C dependency and makes
it testable with a socket in a temporary directory.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping

log = logging.getLogger("facelint.notify")

# A full receive queue on systemd's side must not stall the daemon's work loop; a lost
# STATUS= is harmless and a lost WATCHDOG=1 is retried at the next interval.
_SEND_TIMEOUT_SECONDS = 1.0


def _socket_address(value: str) -> str | None:
    """The address to pass to sendto(), or None for values we cannot use."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        # sd_notify(3): a leading "@" names a socket in the abstract namespace, which the
        # kernel spells with a leading NUL byte.
        return "\0" + value[1:]
    # Anything else (a relative path, systemd's newer "vsock:" form) is not something
    # this implementation can reach; treating it as absent keeps the daemon running.
    return None


def _parse_positive_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number > 0 else None


def _format_value(value: object) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    # A newline would end the field early and let the rest be read as another assignment.
    return str(value).replace("\n", " ")


class SystemdNotifier:
    """Sends service state to systemd; every method is a no-op outside a notify unit.

    Failures to send are logged once at warning and never raised: losing contact with
    the service manager must not stop the daemon's work.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw_socket = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw_socket) if raw_socket else None
        if raw_socket and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a supported address: not notifying", raw_socket)
        self._watchdog_usec = _parse_positive_int(env.get("WATCHDOG_USEC"))
        self._watchdog_pid = _parse_positive_int(env.get("WATCHDOG_PID"))
        self._warned = False
        self._warn_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self._address is not None

    def notify(self, **fields: object) -> bool:
        """Send the fields as one datagram, in the order given; True if it was sent.

        ``notify(READY=1, STATUS="scanning")`` sends ``READY=1\\nSTATUS=scanning``.
        """
        if self._address is None or not fields:
            return False
        payload = "\n".join(f"{key}={_format_value(value)}" for key, value in fields.items())
        try:
            # One socket per message, as libsystemd does: nothing to keep open across a
            # fork into the encode pool, and nothing to re-create after an error.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT_SECONDS)
                sock.sendto(payload.encode("utf-8"), self._address)
        except OSError as exc:
            self._report_failure(exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd start-up is complete (units ordered after this one may start)."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """A one-line state shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd shutdown has begun, so it shows "deactivating" not "failed"."""
        if status is None:
            return self.notify(STOPPING=1)
        return self.notify(STOPPING=1, STATUS=status)

    def watchdog(self) -> bool:
        """Keep-alive; systemd restarts the unit when these stop for WatchdogSec."""
        if not self._is_watchdog_process():
            return False
        return self.notify(WATCHDOG=1)

    def watchdog_interval(self) -> float | None:
        """Seconds between keep-alives (half of WATCHDOG_USEC), or None when not wanted.

        None when there is no socket, no watchdog, or WATCHDOG_PID names another
        process: a child that inherited the environment must not ping for its parent.
        """
        if self._address is None or self._watchdog_usec is None:
            return None
        if not self._is_watchdog_process():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def _is_watchdog_process(self) -> bool:
        # Compared at call time, not construction: the notifier may be built before a fork.
        return self._watchdog_pid is None or self._watchdog_pid == os.getpid()

    def _report_failure(self, exc: OSError) -> None:
        # The watchdog sends every minute: a warning each time would flood the journal.
        with self._warn_lock:
            first = not self._warned
            self._warned = True
        if first:
            log.warning("cannot notify systemd at %r: %s", self._printable_address(), exc)
        else:
            log.debug("cannot notify systemd: %s", exc)

    def _printable_address(self) -> str:
        address = self._address or ""
        return "@" + address[1:] if address.startswith("\0") else address
