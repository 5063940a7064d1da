"""A data set's faces in an order, and a seed, that depend on their content alone.

The random draws behind the calibration (daemon/calibration.py) and the suggestions'
confidences (daemon/kinds/stats.py) index the faces: put in content order (folder, then
content hash) and seeded from that content, every index a draw picks names the same face
in every build of the same files, whatever their file ids or the order they arrived in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def content_order(codes: np.ndarray, keys: Sequence[str]) -> np.ndarray:
    """The faces by folder code, then content key (stable: equal keys keep the caller's
    order, which find_suggestions makes the path order): the order the statistics index."""
    n = len(keys)
    if n == 0:
        return np.empty(0, np.int64)
    # The daemon's faces come in this order already (find_suggestions): a check is a
    # fraction of a sort (sorting 57,637 hashes took 0.1 s).
    step = np.diff(codes)
    if (step >= 0).all():
        # Arrow compares UTF-8 bytes, which orders as Python's code points do.
        arr = pa.array(keys, pa.string())
        rising = pc.less_equal(arr[:-1], arr[1:]).to_numpy(zero_copy_only=False)
        if rising[step == 0].all():
            return np.arange(n)
    _, rank = np.unique(np.asarray(keys), return_inverse=True)
    return np.lexsort((rank.ravel(), codes))


def content_seed(codes: np.ndarray, keys: Sequence[str]) -> int:
    """A seed that is a function of the data alone: the folder codes and content keys of
    the faces in content order. The same files give the same draws whatever their ids
    and whatever order they arrived in."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.ascontiguousarray(codes, dtype="<i8").tobytes())
    digest.update("\n".join(keys).encode())
    return int.from_bytes(digest.digest(), "little")


def content_keys(unit: np.ndarray) -> list[str]:
    """Content keys for faces known only by their vectors (synthetic data): each vector's
    bytes, hashed."""
    rows = np.ascontiguousarray(unit, dtype=np.float32)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in rows]
