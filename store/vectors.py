"""Embeddings as unit vectors, so that a dot product is the cosine.

Here rather than in the daemon because both sides need it: the store hands out unit
vectors (store/search.py) and cannot import the daemon, which normalises its own
(compare, search).
"""

from __future__ import annotations

import numpy as np


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1, as float32; an all-zero row stays zero."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return v / norms
