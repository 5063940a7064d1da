"""The array backend for comparisons: CuPy when a GPU is usable, NumPy otherwise.

Both expose the same array API for what compare.py does (matmul, comparisons, nonzero),
so the comparison is one piece of code.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


def cupy_usable() -> tuple[bool, str]:
    """Whether CuPy imports and sees a CUDA device, and if not, why."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        return False, f"cupy not available ({type(exc).__name__}: {exc})"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"cupy found no usable GPU ({exc})"
    if count < 1:
        return False, "cupy found no GPU"
    return True, f"cupy on {count} GPU(s)"


def get_backend(name: str = "auto") -> tuple[ModuleType, str]:
    """(array module, a line saying which and why). `name`: auto | numpy | cupy."""
    if name == "numpy":
        return np, "numpy (configured)"
    ok, why = cupy_usable()
    if ok:
        import cupy

        return cupy, why
    if name == "cupy":
        raise RuntimeError(f"backend 'cupy' was asked for but {why}")
    return np, f"numpy ({why})"


def to_host(xp: ModuleType, array: object) -> np.ndarray:
    if xp is np:
        return array  # type: ignore[return-value]
    return xp.asnumpy(array)
