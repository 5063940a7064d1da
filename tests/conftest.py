"""Shared fixtures: real faces from tests/faces (the dev faces, with their manifest and
SOURCES.md), real DuckDB files in temp dirs.

The dev faces are encoded once per test run (`scanned_dev`, ~5 s of dlib on two cores),
however many pytest-xdist workers share the run; every other store of dev images starts
from a copy of that store, so its scan finds each content's encoding by hash and encodes
nothing. Tests of encoding itself build their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
# In the repository, so that a fresh clone tests itself; never written to.
DEV_FACES = REPO / "tests" / "faces"

# The modules that take longest (wall seconds per module from a run of README's command
# with the host's other load at ~1 core, `-p cpuprof`), run first: pytest-xdist's loadfile
# hands out whole modules in collection order (README's test command turns off its
# reordering by test count, which put these few-test modules last), and a long module
# that starts last runs alone at the end. Scheduling only: every module runs either way.
LONGEST_FIRST = (
    "test_dashboard_serving.py",  # ~80 s: servers, every page in Chromium
    "test_ray.py",  # ~45 s: a two-node Ray cluster, a third of the dev faces through it
    "test_dashboard_browser.py",  # ~57 s
    "test_service_steps.py",  # ~53 s
    "test_daemon.py",  # ~45 s: daemons as subprocesses, kill -9
    "test_review_queue.py",  # ~28 s
    "test_dashboard_app.py",  # ~26 s
    "test_bench_smoke.py",  # ~23 s: two benchmarks end to end
    "test_review_page.py",
    "test_up.py",
    "test_scan.py",
    "test_output.py",
    "test_backup.py",
    "test_dashboard_hostile.py",
    "test_model_switch.py",
    "test_arcface.py",
    "test_daemon_hardening.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _main_module_kept():
    """Streamlit's AppTest installs its script as `__main__` for good; a process pool
    spawned afterwards would make every worker re-run that script. Put ours back."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


def real_files(root: Path) -> set[str]:
    """Regular files reached without following any link: what must be stored."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            full = Path(dirpath) / name
            if not full.is_symlink():
                out.add(full.relative_to(root).as_posix())
    return out


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


def scan(root: Path, db: Path, **settings: object) -> Any:
    """Run the real pipeline once over root into db; returns its RunStats."""
    from daemon.config import Settings
    from daemon.pipeline import Pipeline

    pipeline = Pipeline(Settings(root=root, db=db, **settings))  # type: ignore[arg-type]
    try:
        return pipeline.run()
    finally:
        pipeline.close()


def store_rows(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    """A read-only query of db, through the store's own open: a DuckDB instance of its own
    for each look would cost several times as much, and the drains look after every
    step (docs/design.md, "Opening the store")."""
    from store.connection import open_store

    with open_store(db, read_only=True, timeout=5) as con:
        return con.execute(sql, params or []).fetchall()


@contextmanager
def store_held_by_another_process(db: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (the daemon, a DuckDB CLI) holds the store read-write until the
    block ends, or until a line is written to the holder's stdin."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb,sys; c=duckdb.connect(sys.argv[1]); "
            "print('locked', flush=True); sys.stdin.readline(); c.close()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def release(holder: subprocess.Popen[str]) -> None:
    """Let go of a store_held_by_another_process lock now, and wait until it is gone."""
    assert holder.stdin is not None
    holder.stdin.write("\n")
    holder.stdin.flush()
    holder.wait(timeout=30)


def _built_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]
) -> Path:
    """A folder `build` fills once per test run: with pytest-xdist, the first worker to
    get here builds it under the run's shared temp folder while the others wait on its
    lock, then all read it (the pattern pytest-xdist documents for session fixtures)."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    base = shared / name
    with FileLock(str(shared / f"{name}.lock")):
        if not (base / ".built").exists():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir(parents=True)
            build(base)
            (base / ".built").touch()
    return base


@pytest.fixture(scope="session")
def scanned_dev(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data root, store) of the whole dev set, scanned once per run: the run's only
    encode of the dev faces, and the template every other dev store copies.
    Read-only use."""

    def build(base: Path) -> None:
        scan(copy_dev_faces(base / "data"), base / "facelint.duckdb")

    base = _built_once(tmp_path_factory, "scanned_dev", build)
    return base / "data", base / "facelint.duckdb"


# The default threshold keeps ~0.1 false matches per image: on 71 faces that is the nine
# Biden pairs alone. Pages, filters and decisions need a longer list to work on.
LOOSE_THRESHOLD = 0.1


def private_copy(scanned: tuple[Path, Path], base: Path) -> tuple[Path, Path]:
    root, db = scanned
    new_root = base / "data"
    # copy2 keeps sizes and mtimes: the scan of a copy sees the files it stored.
    shutil.copytree(root, new_root, copy_function=shutil.copy2)
    new_db = base / "facelint.duckdb"
    shutil.copy2(db, new_db)
    return new_root, new_db


@pytest.fixture(scope="session")
def scanned_dev_loose(
    scanned_dev: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """The dev set at a low threshold: many pairs to page, filter and decide. Rescored
    from the session's encodings, as a user's change of threshold would be."""

    def build(base: Path) -> None:
        root, db = private_copy(scanned_dev, base)
        stats = scan(root, db, threshold=LOOSE_THRESHOLD)
        assert stats.encoded == 0 and stats.full_compare, "the loose store must only rescore"

    base = _built_once(tmp_path_factory, "scanned_dev_loose", build)
    return base / "data", base / "facelint.duckdb"


@pytest.fixture
def dev_copy(scanned_dev: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private, writable copy of the scanned dev set: (data root, store)."""
    return private_copy(scanned_dev, tmp_path)


@pytest.fixture
def dev_copy_loose(scanned_dev_loose: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A private, writable copy of the loosely scanned dev set: (data root, store)."""
    return private_copy(scanned_dev_loose, tmp_path)


@pytest.fixture(scope="session")
def seed_encodings(scanned_dev: tuple[Path, Path]) -> Callable[[Path], Path]:
    """seed(db): a store at db that already holds the encoding of every dev face (a copy
    of the session's scanned dev store). A scan of any tree of dev images into it encodes
    nothing: what the tree lacks is removed, what it renamed is a move."""

    def seed(db: Path) -> Path:
        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(scanned_dev[1], db)
        return db

    return seed


@pytest.fixture(scope="session")
def seed_encodings_only(scanned_dev: tuple[Path, Path]) -> Callable[[Path], Path]:
    """seed(db): a new store that holds the dev faces' encodings and nothing else: no
    files, folders, pairs or review. A scan into it builds the rest as into a store made
    from nothing (folders numbered anew, in its own order), and encodes nothing."""

    def seed(db: Path) -> Path:
        from store.connection import open_store
        from store.schema import ensure_schema

        with open_store(db, timeout=30) as con:
            ensure_schema(con)
            con.execute("ATTACH ? AS dev (READ_ONLY)", [str(scanned_dev[1])])
            for table in ("embeddings", "faces"):
                con.execute(f"INSERT INTO {table} SELECT * FROM dev.{table}")
            # The process keeps one DuckDB for every open (store/connection.py): an
            # attach left there would hold the session's store for the rest of the run.
            con.execute("DETACH dev")
        return db

    return seed


@pytest.fixture
def run_scan() -> Callable[..., Any]:
    """Run the real pipeline once over root into db; returns RunStats."""
    return scan


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per browser test module (its start costs seconds); each test gets a
    fresh context of its own from browser_harness.browser_page(), so no cookie or storage
    carries over."""
    from tests.browser_harness import chromium

    with chromium() as launched:
        yield launched
