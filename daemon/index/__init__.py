"""Candidates from an index, scores from the exact comparison.

Past a size where the all-pairs product stops being cheap (N²·d ≳ 5·10¹², about 200k
faces at 128-d and 100k at 512-d: docs/design.md, "Past one machine"), the cross-folder
candidates come from a faiss IVF-Flat range search whose inverted lists are the folders
themselves (`daemon/index/folders.py`), and every candidate is scored again by the exact
code (`daemon/compare.py: rescore`): stored scores, the calibration, top-k, merge and hubs
are those of the exact path, which stays the oracle. `faiss-cpu` is the extra `.[index]`.
"""

from __future__ import annotations

from importlib.util import find_spec

# N²·d above which `candidates = "auto"` searches the index (design.md: exact costs
# ~1.3e-11 core-s per N²·d, about 65 core-s at this size; the index ~1/8 of that).
AUTO_WORK = 5e12


def faiss_available() -> bool:
    return find_spec("faiss") is not None


def use_index(mode: str, n: int, d: int) -> bool:
    """Whether a refresh over n faces of d dimensions takes its candidates from the index.

    `mode`: the `candidates` setting. "index" without faiss is the user's error, said
    plainly; "auto" without faiss is the exact comparison."""
    if mode == "exact":
        return False
    if mode == "index":
        if not faiss_available():
            raise RuntimeError(
                "candidates = 'index' needs faiss: pip install 'facelint[index]' "
                "(or set candidates = 'auto' or 'exact')"
            )
        return True
    return faiss_available() and float(n) * n * d >= AUTO_WORK
