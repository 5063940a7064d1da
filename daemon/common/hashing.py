"""A file's content hash, the one identity facelint gives an image's content.

The scanner stores it (daemon/inventory.py) and the dashboard checks it again before it
moves a file (dashboard/files.py), so a file replaced under a reviewed path is never
moved as if it were the image reviewed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

HASH_CHUNK = 1 << 20

# Why a path is never read: the scan's reasons (daemon/inventory.py) and the dashboard's.
FIFO = "named pipe (FIFO): not a regular file, never opened"
DEVICE = "device node: not a regular file, never opened"
SOCKET = "socket: not a regular file, never opened"
HARD_LINK = "hard link: may name a file outside the root (give it its own copy to include it)"


def special_file(mode: int) -> str | None:
    """Why a path that is neither a regular file nor a link is not read; None for a folder
    (an image-like folder name is just a folder)."""
    if stat.S_ISFIFO(mode):
        return FIFO
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return DEVICE
    if stat.S_ISSOCK(mode):
        return SOCKET
    return None


def content_hash(path: Path) -> str:
    """BLAKE2b-128 of the file's bytes, as hex: what the store's `hash` columns hold.

    Opened without following a link and without blocking, and refused (OSError) unless it
    is still a regular file with one name: the caller looked at the path a moment ago, and
    a FIFO or a link put there since must neither block nor lead out of the root."""
    h = hashlib.blake2b(digest_size=16)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            why = special_file(st.st_mode) or (HARD_LINK if st.st_nlink > 1 else "not a file")
            raise OSError(errno.EINVAL, why, str(path))
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()
