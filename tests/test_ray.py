"""Encoding on a Ray cluster (`ray_address`): a real local cluster of two 1-CPU nodes
(`ray.cluster_utils.Cluster`, one per module), real dlib actors, real stores. The
cluster's vectors must be the local pool's (the session's `scanned_dev` store holds
those), and the daemon's writes of them must respect the store's generation."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from daemon import encode as encode_step
from daemon import scan
from daemon.cli import main
from daemon.config import Settings
from daemon.encoders import registry
from daemon.encoders.base import Encoding
from daemon.encoders.ray_pool import ClusterUnavailable, RayEncoderPool
from daemon.notify import SystemdNotifier
from daemon.pipeline import Pipeline
from daemon.runstats import RunStats
from daemon.service import ERROR, Service
from store import embeddings
from store.db import Store
from store.vocab import Status
from tests.conftest import copy_dev_faces

# Set before ray is first imported (it reads them then): no usage report, and every node
# on the loopback address, so nothing leaves this machine.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}
# The smallest object store Ray accepts is 75 MiB; results are a few KB a batch. No log
# monitor (a process per node, ~1 CPU-s to start): the pools connect with log_to_driver off,
# so nothing would read what it streams.
NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024, "include_log_monitor": False}
# Nothing listens on port 1: a cluster that cannot be reached.
NOWHERE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def ray_env() -> Iterator[None]:
    """Ray importable, with this module's environment; skipped without the extra."""
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    try:
        pytest.importorskip("ray.data", reason="ray is not installed: pip install '.[cluster]'")
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def ray_cluster(ray_env: None) -> Iterator[str]:
    """The address of a local Ray cluster of two 1-CPU nodes, for the whole module. Each
    pool connects this process to it and lets go at close()."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


# Where _faces_by_hash keeps an encoding's faces, after its status, message, detected
# faces, whole-image flag, width and height (EncodingRow's order).
FACES = 6


def _faces_by_hash(db: Path, model: str) -> dict[str, tuple]:
    """Every encoding in the store: status, message, detected faces, whole-image flag,
    size, and each face's box, detector score and vector, by content."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out: dict[str, tuple] = {}
        for h, *fields in con.execute(
            """SELECT hash, status, message, faces, whole_image, width, height FROM embeddings
               WHERE model = ?""",
            [model],
        ).fetchall():
            out[h] = (*fields, [])
        for h, _n, box, score, vector in con.execute(
            """SELECT hash, face, [box_left, box_top, box_right, box_bottom], det_score, vector
               FROM faces WHERE model = ? ORDER BY hash, face""",
            [model],
        ).fetchall():
            out[h][FACES].append((tuple(box), score, np.asarray(vector, np.float32)))
        return out
    finally:
        con.close()


def _face_equal(x: tuple, y: tuple) -> bool:
    return x[0] == y[0] and x[1] == y[1] and np.array_equal(x[2], y[2])


def _differing(a: dict[str, tuple], b: dict[str, tuple]) -> list[str]:
    """The contents whose encodings differ in any way (vectors bit for bit)."""
    differ = sorted(set(a) ^ set(b))
    for h in sorted(set(a) & set(b)):
        fa, fb = a[h][FACES], b[h][FACES]
        same = a[h][:FACES] == b[h][:FACES] and len(fa) == len(fb)
        if not (same and all(_face_equal(x, y) for x, y in zip(fa, fb, strict=True))):
            differ.append(h)
    return differ


def test_ray_address_without_ray_installed_is_a_clear_error(tmp_path, monkeypatch, capsys):
    # No `ray` to import, as on a machine without the extra.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterUnavailable, match=r"setting 'ray_address'.*facelint\[cluster\]"):
        encode_step.make_pool(Settings(ray_address="auto"))
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert main(["scan", str(root), "--db", str(tmp_path / "s.duckdb")]) == 2
    err = capsys.readouterr().err
    assert "RAY_ADDRESS names a Ray cluster (auto)" in err and "not installed" in err
    assert not (tmp_path / "s.duckdb").exists()
    # Unset, the local pool as ever.
    monkeypatch.delenv("RAY_ADDRESS")
    assert type(encode_step.make_pool(Settings())).__name__ == "EncoderPool"


# The folders the cluster encodes: three of its blocks (RAY_BATCH images each), so both
# actors get work; a pair of folders that is one person (pairs to compare), and an image
# with no face. A third of the dev set: each image is a dlib encode on the cluster's two
# CPUs, which the suite's other worker shares.
RAY_FOLDERS = ["Amy", "Howard", "Joe_Biden", "Joseph_Biden", "Charlton_Heston"]


@pytest.fixture(scope="module")
def ray_scanned(
    ray_cluster: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RunStats, dict[str, int], str, Path]:
    """RAY_FOLDERS scanned with `ray_address` set: (store, the run's stats, results per
    Ray node, model, data root). Connecting to the cluster leaves the caller's SIGTERM
    handler in place."""
    base = tmp_path_factory.mktemp("ray_scanned")
    root = copy_dev_faces(base / "data", RAY_FOLDERS)
    db = base / "ray.duckdb"
    pipeline = Pipeline(Settings(root=root, db=db, ray_address=ray_cluster))
    # The daemon's own SIGTERM handler (its clean stop), which ray.init would replace.
    previous = signal.signal(signal.SIGTERM, _daemon_stop)
    try:
        assert isinstance(pipeline.pool, RayEncoderPool)
        stats = pipeline.run()
        assert signal.getsignal(signal.SIGTERM) is _daemon_stop, "ray took SIGTERM"
        nodes = dict(pipeline.pool.nodes)
    finally:
        signal.signal(signal.SIGTERM, previous)
        pipeline.close()
    return db, stats, nodes, pipeline.model, root


def _daemon_stop(signum: int, frame: object) -> None:
    raise AssertionError("no SIGTERM is sent in these tests")


def test_the_two_nodes_encode_the_dev_faces_to_the_local_pools_vectors(
    ray_scanned: tuple[Path, RunStats, dict[str, int], str, Path],
    scanned_dev: tuple[Path, Path],
    seed_encodings_only: Callable[[Path], Path],
    run_scan: Callable[..., RunStats],
    tmp_path: Path,
):
    db, stats, nodes, model, root = ray_scanned
    made = _faces_by_hash(db, model)
    with Store(db, lock_timeout=5.0).reading() as con:
        contents = con.execute("SELECT count(DISTINCT hash) FROM files").fetchone()
    assert stats.encoded == len(made) == contents[0] and stats.failed == 0
    assert any(enc[0] == Status.NO_FACE for enc in made.values())
    # The local pool encoded the same images once per session: bit for bit the same.
    local = _faces_by_hash(scanned_dev[1], model)
    assert set(made) <= set(local)
    assert _differing(made, {h: local[h] for h in made}) == []
    # Both nodes took a share (a pool of two actors, one CPU each).
    assert len(nodes) == 2 and sum(nodes.values()) == len(made), nodes
    # The same vectors make the same pairs as the local pool's scan of the same tree.
    local_db = seed_encodings_only(tmp_path / "local.duckdb")
    assert run_scan(root, local_db).encoded == 0
    pairs = "SELECT path_a, path_b, score FROM pairs ORDER BY ALL"
    with (
        Store(db, lock_timeout=5.0).reading() as con,
        Store(local_db, lock_timeout=5.0).reading() as lcon,
    ):
        found = con.execute(pairs).fetchall()
        assert found and found == lcon.execute(pairs).fetchall()


def test_a_batch_the_store_moved_past_is_written_only_as_far_as_it_is_still_wanted(
    ray_scanned: tuple[Path, RunStats, dict[str, int], str, Path], tmp_path: Path
):
    root = copy_dev_faces(tmp_path / "data", ["Amy", "Howard"])
    settings = Settings(root=root, db=tmp_path / "s.duckdb")
    store = Store(settings.db, lock_timeout=5.0)
    model = ray_scanned[3]
    stats = RunStats()
    todo = scan.apply(settings, store, model, scan.detect(settings, store, model, stats), stats)
    assert todo is not None and len(todo) == 10
    # The batch the cluster returned for these images (as the cluster's own store holds it).
    made = _faces_by_hash(ray_scanned[0], model)
    rows = [
        embeddings.EncodingRow(
            h,
            *made[h][:FACES],
            faces=[embeddings.FaceRow(box, vector, score) for box, score, vector in made[h][FACES]],
        )
        for h, _ in todo
    ]
    seen = store.generation()

    # Between the encode and the write the store moves on: one image is deleted (a scan
    # drops its content), another writer encodes another content.
    gone_hash, gone_path = todo[0]
    (root / gone_path).unlink()
    scan.apply(settings, store, model, scan.detect(settings, store, model, stats), stats)
    other = next(r for r in rows if r.hash == todo[1][0])
    with store.writing() as con:
        encode_step.write_batch(con, model, [other], None)

    with store.writing() as con:
        result = encode_step.write_batch(con, model, rows, seen)
    assert result.stale
    assert sorted(result.dropped) == sorted([gone_hash, other.hash])
    assert result.written == len(rows) - 2
    assert result.generation == store.generation()
    # Nothing lost: every content the store holds has its encoding, the deleted one none.
    with store.reading() as con:
        assert embeddings.hashes_to_encode(con, model) == []
        assert embeddings.still_to_encode(con, model, [gone_hash]) == set()
    assert gone_hash not in _faces_by_hash(settings.db, model)

    # A writer that last left the store where it is writes without a second look.
    with store.writing() as con:
        again = encode_step.write_batch(con, model, rows[2:3], result.generation)
    assert not again.stale and again.written == 1


def test_what_a_node_cannot_see_is_an_error_to_retry_not_a_vanished_file(
    ray_env: None, tmp_path: Path
):
    pool = RayEncoderPool(Settings(ray_address="auto"))  # connects on first encode only
    here = copy_dev_faces(tmp_path / "data", ["Amy"]) / "Amy" / "amy1.png"
    vanished = Encoding(Status.MISSING, "file disappeared before it was read", pool.model_id)
    # On the daemon's storage but not on the node's: an error naming both, retried later.
    seen = pool._checked(vanished, here, "node-b")
    assert seen.status == Status.ERROR
    assert "Ray node node-b cannot read" in seen.message and str(here) in seen.message
    # Gone everywhere: a vanished file, skipped as the local pool's would be.
    assert pool._checked(vanished, here.with_name("gone.png"), "node-b").status == Status.MISSING
    # A node built with other settings or another facelint: refused, never stored.
    other = Encoding(Status.OK, "", "dlib-resnet-v1/5pt/j9")
    with pytest.raises(ClusterUnavailable, match="install the same facelint"):
        pool._checked(other, here, "node-b")


def test_a_cluster_that_cannot_be_reached_is_said_and_loses_nothing(ray_env: None, tmp_path: Path):
    root = copy_dev_faces(tmp_path / "data", ["Amy"])
    settings = Settings(root=root, db=tmp_path / "s.duckdb", ray_address=NOWHERE, temp_sensor="")
    service = Service(settings, temperature=lambda: 50.0, notifier=SystemdNotifier({}))
    service.open()
    try:
        service.step()  # the first reconcile: it fails, says why, and will be tried again
        assert service.state == ERROR
        assert "encoding cluster unavailable" in service.message
        assert f"cannot reach the Ray cluster at '{NOWHERE}'" in service.message
        assert service.reconcile_due.is_set()
    finally:
        service.close()
    # The files are stored, their encodings still to do: a later run makes them.
    with Store(settings.db, lock_timeout=5.0).reading() as con:
        assert len(embeddings.hashes_to_encode(con, registry.model_id(settings))) == 5


def test_the_index_sharded_over_ray_actors_equals_the_single_index(
    ray_cluster: str, tmp_path: Path
) -> None:
    """index_shards = 2: the folder index's lists in two Ray actors, one on each node; a
    range search fans out to both and its candidates are the single index's, built and
    then kept (moves, deletions, a re-encode, new faces in a new folder)."""
    pytest.importorskip("faiss", reason="faiss is not installed: pip install '.[index]'")
    from daemon.index.keeper import Keeper
    from tests.test_index import assert_same, build, changed_set, entries, indexed, threshold_for

    (unit, classes, ids, keys), (unit2, classes2, ids2, keys2) = changed_set(seed=1)
    t = threshold_for(unit, classes)
    keeper = Keeper(tmp_path / "s.duckdb", "m", shards=2, ray_address=ray_cluster)
    try:
        for u, c, i, k in ((unit, classes, ids, keys), (unit2, classes2, ids2, keys2)):
            search = keeper.search(np, u, i, c, k, t, "m")
            single = build(u, c, i, k, t)
            sharded = keeper.index
            assert sharded is not None and len(sharded.holders) == 2
            per = [h.wait(h.call("totals")) for h in sharded.holders]
            assert all(0 < faces < single.main.ntotal for faces, _ in per)
            assert entries(sharded) == entries(single)
            got = _pairs(search)
            assert len(got) > 20
            assert_same(got, indexed([single], u, t))
            rows = np.arange(0, len(u), 7)
            assert_same(indexed([sharded], u, t, rows), indexed([single], u, t, rows))
        assert not sharded.built  # the second round was kept, not rebuilt
        assert keeper.shards is not None and len(set(keeper.shards.nodes())) == 2
        # A shard's actor dies (its node left): said, and the next refresh builds the
        # index again in new actors.
        import ray

        killed = keeper.shards._actors[0]
        ray.kill(killed)
        # ray.kill only asks: once the actor is gone, as after its node left. (A search
        # sent at once could still be served, seen once with the suite's other worker
        # busy.)
        deadline = time.monotonic() + 30
        while True:
            try:
                ray.get(killed.__ray_ready__.remote(), timeout=10)
            except ray.exceptions.RayActorError:
                break
            assert time.monotonic() < deadline, "the killed actor still answers"
            time.sleep(0.1)
        with pytest.raises(ClusterUnavailable, match="the folder index's Ray actors failed"):
            list(keeper.search(np, unit2, ids2, classes2, keys2, t, "m")(None))
        again = keeper.search(np, unit2, ids2, classes2, keys2, t, "m")
        assert_same(_pairs(again), indexed([build(unit2, classes2, ids2, keys2, t)], unit2, t))
    finally:
        keeper.close()
    assert not (tmp_path / "s.duckdb.index.npz").exists()  # actors' lists are not saved


def _pairs(search) -> dict[tuple[int, int], float]:  # type: ignore[no-untyped-def]
    return {
        (int(a), int(b)): float(v)
        for x, y, z in search(None)
        for a, b, v in zip(x, y, z, strict=True)
    }
