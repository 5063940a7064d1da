"""Asking the running daemon to search by photo, over its local socket.

The daemon keeps its face model loaded, so a search it answers skips the seconds a new
process spends loading one (docs/design.md, "Search by the daemon"). The socket is a
Unix socket beside the status file (`<db>.search.sock`, owner-only), and a client proves
it may ask with the key in `<db>.search.key` (owner-only, new at each daemon start):
multiprocessing.connection's HMAC challenge, both ways. Messages are JSON (never pickle):
a request `{"op": "search", "n": N, "name": NAME, "size": BYTES}`, then the photo's bytes
(the daemon may not see the client's files: systemd gives each service its own /tmp),
then one answer `{"ok": true, "result": {...}}` or `{"ok": false, "error": "..."}`.

Standard library only: `facelint search` and the dashboard both ask through here.
"""

from __future__ import annotations

import json
import socket
import struct
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from pathlib import Path
from typing import Any

# The largest photo a client may send (and the daemon accepts).
MAX_PHOTO_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 4096
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# How long a client waits for the daemon's answer (it answers in about a second).
ANSWER_TIMEOUT_SECONDS = 30.0
# A peer that sends nothing for this long mid-exchange is dropped.
IO_TIMEOUT_SECONDS = 10.0


class DaemonAbsent(ConnectionError):
    """No daemon answers on this store's search socket: search without it."""


class SearchRefused(RuntimeError):
    """The daemon answered, and said no: the message says why, in words."""


def set_timeouts(sock: socket.socket, seconds: float) -> None:
    """Kernel-side send and receive timeouts on a blocking socket: a read or write that
    waits longer fails with an OSError. (socket.settimeout would make the descriptor
    non-blocking, which multiprocessing's Connection does not expect.)"""
    whole = int(seconds)
    value = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def read_key(key_path: Path) -> bytes:
    try:
        return Path(key_path).read_bytes()
    except FileNotFoundError as exc:
        raise DaemonAbsent(f"no search key at {key_path}: no daemon has served this store") from exc
    except OSError as exc:
        raise SearchRefused(f"cannot read the daemon's search key {key_path}: {exc}") from exc


def connect(socket_path: Path, key_path: Path, timeout: float = IO_TIMEOUT_SECONDS) -> Connection:
    """An authenticated connection to the daemon's search socket; DaemonAbsent when no
    daemon listens there, SearchRefused when it refuses this client's key."""
    if not Path(socket_path).exists():
        raise DaemonAbsent(f"no daemon search socket at {socket_path}")
    key = read_key(key_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        set_timeouts(sock, timeout)
        sock.connect(str(socket_path))
    except (ConnectionRefusedError, FileNotFoundError) as exc:
        sock.close()
        raise DaemonAbsent(f"no daemon listens on {socket_path} ({exc.strerror})") from exc
    except OSError as exc:
        sock.close()
        raise DaemonAbsent(f"cannot reach the daemon on {socket_path}: {exc}") from exc
    conn = Connection(sock.detach())
    try:
        # The order multiprocessing.connection.Client uses: answer, then challenge.
        answer_challenge(conn, key)
        deliver_challenge(conn, key)
    except AuthenticationError as exc:
        conn.close()
        raise SearchRefused(
            f"the daemon refused this client ({exc}): the key in {key_path} is not the one "
            "it started with (a daemon restarted meanwhile, or another store's key)"
        ) from exc
    except (OSError, EOFError) as exc:
        conn.close()
        raise DaemonAbsent(f"the daemon on {socket_path} did not answer: {exc}") from exc
    return conn


def ask(
    socket_path: Path,
    key_path: Path,
    photo: bytes,
    name: str,
    n: int,
    timeout: float = ANSWER_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    """The daemon's search result for the photo (the dict `facelint search --json`
    prints); DaemonAbsent when no daemon answers, SearchRefused when it says no."""
    if len(photo) > MAX_PHOTO_BYTES:
        raise SearchRefused(f"the photo is over {MAX_PHOTO_BYTES // 2**20} MB")
    conn = connect(socket_path, key_path)
    try:
        header = {"op": "search", "n": int(n), "name": str(name), "size": len(photo)}
        conn.send_bytes(json.dumps(header).encode())
        conn.send_bytes(photo)
        if not conn.poll(timeout):
            raise SearchRefused(f"the daemon did not answer within {timeout:.0f} s")
        answer = json.loads(conn.recv_bytes(MAX_ANSWER_BYTES))
    except (OSError, EOFError, ValueError) as exc:
        raise SearchRefused(f"the search over the daemon's socket failed: {exc}") from exc
    finally:
        conn.close()
    if not isinstance(answer, dict):
        raise SearchRefused("the daemon's answer is not an object")
    if not answer.get("ok"):
        raise SearchRefused(str(answer.get("error") or "the daemon refused the search"))
    result = answer.get("result")
    if not isinstance(result, dict):
        raise SearchRefused("the daemon's answer holds no result")
    return result
