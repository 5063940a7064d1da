"""A file's content hash, the one identity facelint gives an image's content.

The scanner stores it (daemon/inventory.py) and the dashboard checks it again before it
moves a file (dashboard/files.py), so a file replaced under a reviewed path is never
moved as if it were the image reviewed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HASH_CHUNK = 1 << 20


def content_hash(path: Path) -> str:
    """BLAKE2b-128 of the file's bytes, as hex: what the store's `hash` columns hold."""
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()
