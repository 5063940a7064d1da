"""Shared fixtures: real faces from tests/faces (the dev faces, with their manifest and
SOURCES.md), real DuckDB files in temp dirs."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# In the repository, so that a fresh clone tests itself; never written to.
DEV_FACES = REPO / "tests" / "faces"


@pytest.fixture(autouse=True)
def _main_module_kept():
    """Streamlit's AppTest installs its script as `__main__` for good; a process pool
    spawned afterwards would make every worker re-run that script. Put ours back."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


def copy_dev_faces(dest: Path, classes: list[str] | None = None) -> Path:
    """A writable copy of the dev faces (class folders only) at dest."""
    if not DEV_FACES.is_dir():
        pytest.fail(f"dev faces not found at {DEV_FACES}: they ship with the repository")
    dest.mkdir(parents=True, exist_ok=True)
    for folder in sorted(p for p in DEV_FACES.iterdir() if p.is_dir()):
        if classes is None or folder.name in classes:
            shutil.copytree(folder, dest / folder.name)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


def _scan_dev(base: Path, **settings: object) -> tuple[Path, Path]:
    from daemon.config import Settings
    from daemon.pipeline import Pipeline

    root = copy_dev_faces(base / "data")
    db = base / "facelint.duckdb"
    pipeline = Pipeline(Settings(root=root, db=db, **settings))  # type: ignore[arg-type]
    try:
        pipeline.run()
    finally:
        pipeline.close()
    return root, db


@pytest.fixture(scope="session")
def scanned_dev(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, store) of the whole dev set, scanned once per session. Read-only use."""
    return _scan_dev(tmp_path_factory.mktemp("scanned_dev"))


# The default threshold keeps ~0.1 false matches per image: on 71 faces that is the nine
# Biden pairs alone. Pages, filters and decisions need a longer list to work on.
LOOSE_THRESHOLD = 0.1


@pytest.fixture(scope="session")
def scanned_dev_loose(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The dev set scanned with a low threshold: many pairs to page, filter and decide."""
    return _scan_dev(tmp_path_factory.mktemp("scanned_dev_loose"), threshold=LOOSE_THRESHOLD)


def _private_copy(scanned: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    root, db = scanned
    new_root = tmp_path / "data"
    shutil.copytree(root, new_root, copy_function=shutil.copy2)
    new_db = tmp_path / "facelint.duckdb"
    shutil.copy2(db, new_db)
    return new_root, new_db


@pytest.fixture
def dev_copy(scanned_dev: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private, writable copy of the scanned dev set: (data root, store)."""
    return _private_copy(scanned_dev, tmp_path)


@pytest.fixture
def dev_copy_loose(scanned_dev_loose: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private, writable copy of the loosely scanned dev set: (data root, store)."""
    return _private_copy(scanned_dev_loose, tmp_path)


@pytest.fixture
def run_scan() -> Callable[..., object]:
    """Run the real pipeline once over root into db; returns RunStats."""
    from daemon.config import Settings
    from daemon.pipeline import Pipeline

    def run(root: Path, db: Path, **settings: object):
        pipeline = Pipeline(Settings(root=root, db=db, **settings))  # type: ignore[arg-type]
        try:
            return pipeline.run()
        finally:
            pipeline.close()

    return run
