"""The folder index (daemon/index): candidates from faiss, scores from the exact code.

Small synthetic sets (a few hundred clustered faces): the index equals the exact
comparison when every folder is probed; kept incrementally it equals a fresh build;
sharded by folder it equals the single index; saved beside the store it is brought up
to date when loaded; the daemon's stored pairs through it equal the exact ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from daemon import compare, config
from daemon.config import ConfigError, Settings
from daemon.index import AUTO_WORK, use_index
from daemon.pipeline import Pipeline

faiss = pytest.importorskip("faiss", reason="faiss is not installed: pip install '.[index]'")

from daemon.index import folders  # noqa: E402  (needs faiss at use, not at import)
from daemon.index.folders import FolderIndex  # noqa: E402


def clustered(seed: int = 0, people: int = 40, per: int = 8, d: int = 32):
    """Faces of `people` people, `per` each, one folder per person, with misfiles: six
    single ones and one person's two images filed under two other names."""
    rng = np.random.default_rng(seed)
    centres = compare.normalise(rng.standard_normal((people, d)).astype(np.float32))
    who = np.repeat(np.arange(people), per)
    noise = rng.standard_normal((len(who), d)).astype(np.float32) * (0.9 / np.sqrt(d))
    unit = compare.normalise(centres[who] + noise)
    folder = who.copy()
    for row in rng.choice(len(who), 6, replace=False):
        folder[row] = (who[row] + 1 + rng.integers(people - 1)) % people
    # Both of these are person 0, filed under 10 and 20: the pair the routing misses.
    both = np.flatnonzero(who == 0)[:2]
    folder[both] = [10, 20]
    classes = [f"person {f:03d}" for f in folder]
    ids = np.arange(len(who), dtype=np.int64) * 3 + 7  # file ids are not row numbers
    keys = [f"h{i}:0" for i in ids]
    return unit, classes, ids, keys, both


def codes_of(classes: list[str]) -> np.ndarray:
    return np.unique(np.asarray(classes), return_inverse=True)[1]


def threshold_for(unit: np.ndarray, classes: list[str]) -> float:
    """A threshold that lets the misfiles and a tail of look-alikes through."""
    c = codes_of(classes)
    sims = unit @ unit.T
    cross = sims[np.triu(c[:, None] != c[None, :], 1)]
    return float(np.quantile(cross, 0.997))


def exact(unit, classes, t, rows=None) -> dict[tuple[int, int], float]:
    out = {}
    for i, j, c in compare.cross_class_candidates(np, unit, codes_of(classes), t, rows=rows):
        out.update({(int(a), int(b)): float(v) for a, b, v in zip(i, j, c, strict=True)})
    return out


def indexed(indexes, unit, t, rows=None) -> dict[tuple[int, int], float]:
    out = {}
    for i, j, c in folders.candidates(indexes, np, unit, t, rows):
        out.update({(int(a), int(b)): float(v) for a, b, v in zip(i, j, c, strict=True)})
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    assert all(abs(got[key] - want[key]) < 1e-5 for key in want)


def build(unit, classes, ids, keys, t, owns=None) -> FolderIndex:
    return FolderIndex(unit.shape[1], owns=owns).sync(unit, ids, classes, keys, t)


@pytest.fixture
def probe_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folders, "NPROBE", 1000)
    monkeypatch.setattr(folders, "SELF_PROBE", 1000)


def test_every_folder_probed_equals_exact(probe_everything: None) -> None:
    unit, classes, ids, keys, _ = clustered()
    t = threshold_for(unit, classes)
    index = build(unit, classes, ids, keys, t)
    want = exact(unit, classes, t)
    assert len(want) > 20
    assert_same(indexed([index], unit, t), want)
    rows = np.array([0, 5, 17, 100, 101, 250])
    assert_same(indexed([index], unit, t, rows), exact(unit, classes, t, rows))


def test_default_probes_find_the_misfiles_and_the_doubly_misfiled_pair() -> None:
    unit, classes, ids, keys, both = clustered()
    t = threshold_for(unit, classes)
    index = build(unit, classes, ids, keys, t)
    want = exact(unit, classes, t)
    got = indexed([index], unit, t)
    assert set(got) <= set(want)
    assert len(got) >= 0.95 * len(want)
    a, b = (int(x) for x in both)
    assert (a, b) in want and (a, b) in got
    # Neither folder is among the other's probes: the strays found the pair.
    routing = index._routing
    assert routing is not None
    ca, cb = routing.codes[a], routing.codes[b]
    assert cb not in routing.folder_probes(np.array([ca]))[0]
    assert ca not in routing.folder_probes(np.array([cb]))[0]
    assert index.strays.ntotal > 0


def changed_set(seed: int = 0):
    """The clustered set, then a change: three files moved, two deleted, one re-encoded
    (new content: new key and vector), five new files (one in a new folder)."""
    unit, classes, ids, keys, _ = clustered(seed)
    rng = np.random.default_rng(seed + 100)
    unit2, classes2, keys2 = unit.copy(), list(classes), list(keys)
    for row in (3, 50, 200):
        classes2[row] = classes[(row + 40) % len(classes)]
    keys2[9] = "h-new:0"
    unit2[9] = compare.normalise(unit[9:10] + 0.3 * unit[60:61])[0]
    keep = np.ones(len(ids), bool)
    keep[[12, 77]] = False
    new_ids = ids.max() + 1 + np.arange(5)
    new_unit = compare.normalise(unit[[1, 2, 30, 31, 32]] + 0.05 * rng.standard_normal((5, 32)))
    ids2 = np.concatenate([ids[keep], new_ids])
    unit2 = np.concatenate([unit2[keep], new_unit.astype(np.float32)])
    classes2 = [c for c, k in zip(classes2, keep, strict=True) if k] + [
        "person 001",
        "person 001",
        "person 003",
        "someone new",
        "someone new",
    ]
    keys2 = [c for c, k in zip(keys2, keep, strict=True) if k] + [f"h{i}:0" for i in new_ids]
    return (unit, classes, ids, keys), (unit2, classes2, ids2, keys2)


def entries(index: FolderIndex) -> tuple[dict[int, str], dict[int, str]]:
    """What the index holds, by file id: each face's folder and each stray's list, by
    folder name (list numbers differ between a kept index and a fresh one)."""
    name = {i: n for n, i in index.list_of.items()}
    faces = {int(i): name[int(x)] for i, x in zip(index.ids, index.lists, strict=True)}
    strays = {
        int(i): name[int(x)] for i, x in zip(index.ids, index.stray_lists, strict=True) if x >= 0
    }
    assert index.totals() == (len(faces), len(strays))
    return faces, strays


def probes(index: FolderIndex, unit: np.ndarray) -> list[tuple[frozenset, frozenset]]:
    """Each row's routing, by folder name: the folders it searches nearest its folder,
    and nearest itself."""
    routing = index._routing
    assert routing is not None
    name = {i: n for n, i in index.list_of.items()}
    rows = np.arange(len(unit))
    by_folder = routing.folder_probes(routing.codes)
    by_self = routing.self_probes(unit, rows)
    return [
        (frozenset(name[x] for x in f if x >= 0), frozenset(name[x] for x in s if x >= 0))
        for f, s in zip(by_folder.tolist(), by_self.tolist(), strict=True)
    ]


def assert_equals_fresh(kept: FolderIndex, unit, ids, classes, keys, t) -> None:
    fresh = build(unit, classes, ids, keys, t)
    assert np.array_equal(kept.ids, fresh.ids)
    assert entries(kept) == entries(fresh)
    assert probes(kept, unit) == probes(fresh, unit)
    assert_same(indexed([kept], unit, t), indexed([fresh], unit, t))
    rows = np.arange(0, len(ids), 5)
    assert_same(indexed([kept], unit, t, rows), indexed([fresh], unit, t, rows))


@pytest.mark.parametrize("told", [True, False], ids=["changed rows told", "rows compared"])
def test_kept_incrementally_equals_a_fresh_index(told: bool) -> None:
    (unit, classes, ids, keys), (unit2, classes2, ids2, keys2) = changed_set()
    t = threshold_for(unit, classes)
    kept = build(unit, classes, ids, keys, t)
    kept.pairs(unit)  # a full pass first: the routing's caches are full, as in the daemon
    before = kept.main.ntotal
    # The rows the daemon knows changed (dirty): moved, re-encoded, new.
    changed = np.flatnonzero(~np.isin(ids2, ids))
    pos = np.searchsorted(ids, ids2)
    old = np.isin(ids2, ids)
    for row in np.flatnonzero(old):
        p_ = pos[row]
        if classes[p_] != classes2[row] or keys[p_] != keys2[row]:
            changed = np.append(changed, row)
    assert len(changed) == 3 + 1 + 5
    same = kept.sync(unit2, ids2, classes2, keys2, t, changed=changed if told else None)
    assert same is kept and not kept.built  # patched in place, not rebuilt
    assert kept.main.ntotal == before + 5 - 2
    fresh = build(unit2, classes2, ids2, keys2, t)
    assert np.array_equal(kept.ids, fresh.ids)
    names_kept = {n: i for i, n in kept.list_of.items()}
    names_fresh = {n: i for i, n in fresh.list_of.items()}
    assert [names_kept[x] for x in kept.lists] == [names_fresh[x] for x in fresh.lists]
    assert entries(kept) == entries(fresh)
    assert_same(indexed([kept], unit2, t), indexed([fresh], unit2, t))
    moved = np.array([3, 50, 9, len(ids2) - 1])
    assert_same(indexed([kept], unit2, t, moved), indexed([fresh], unit2, t, moved))


def centroid_of(unit: np.ndarray, classes: list[str], name: str) -> np.ndarray:
    return compare.normalise(unit[[c == name for c in classes]].sum(axis=0, keepdims=True))[0]


def test_kept_through_rounds_of_moves_deletions_and_new_folders_equals_fresh() -> None:
    """Rounds of what a daemon sees, each told by its changed rows: faces moved between
    folders and out of them (one folder emptied, so it goes), deleted, re-encoded, new
    faces in new folders; after every round the kept index is a fresh one. A word that
    does not line up with the ids (a new file not told) is not trusted."""
    unit, classes, ids, keys, _ = clustered(seed=4)
    t = threshold_for(unit, classes)
    rng = np.random.default_rng(5)
    kept = build(unit, classes, ids, keys, t)
    kept.pairs(unit)
    classes, keys = list(classes), list(keys)
    emptied = ""
    for round_ in range(4):
        n = len(ids)
        changed = set()
        for row in rng.choice(n, 6, replace=False).tolist():  # moves
            classes[row] = classes[int(rng.integers(n))]
            changed.add(row)
        if round_ == 0:
            # Four of person 0's faces into another folder: its centroid comes near the
            # two misfiled faces of person 0 (loose, elsewhere) from outside their nearest.
            for row in range(2, 6):
                classes[row] = "person 030"
                changed.add(row)
        if round_ == 1:  # a whole folder empties into another
            emptied = classes[0]
            for row in range(n):
                if classes[row] == emptied:
                    classes[row] = classes[-1]
                    changed.add(row)
        for row in rng.choice(n, 2, replace=False).tolist():  # re-encoded
            unit[row] = compare.normalise(unit[row : row + 1] + 0.4 * unit[(row + 9) % n])[0]
            keys[row] = f"h{ids[row]}:{round_ + 1}"
            changed.add(row)
        keep = np.ones(n, bool)
        keep[rng.choice(n, 3, replace=False)] = False  # deleted
        new = 4
        new_ids = ids.max() + 1 + np.arange(new)
        base = rng.choice(n, new)
        new_classes = [f"new {round_}", f"new {round_}"] + [classes[int(b)] for b in base[2:]]
        if round_ == 0:
            # Copies of a loose face into the folder farthest from it: that folder comes
            # nearer to the face than its known nearest, none of which moved.
            assert kept._routing is not None
            face = int(np.flatnonzero(kept._routing.loose)[-1])
            far = min(set(classes), key=lambda c: float(unit[face] @ centroid_of(unit, classes, c)))
            base[:] = face
            new_classes = [far] * new
        new_unit = compare.normalise(unit[base] + 0.1 * rng.standard_normal((new, 32)))
        was = np.flatnonzero(keep)
        ids = np.concatenate([ids[keep], new_ids])
        unit = np.concatenate([unit[keep], new_unit.astype(np.float32)])
        classes = [classes[i] for i in was] + new_classes
        keys = [keys[i] for i in was] + [f"h{i}:0" for i in new_ids]
        row_of = {old: r for r, old in enumerate(was.tolist())}
        told = sorted(row_of[r] for r in changed if r in row_of) + list(range(len(was), len(ids)))
        if round_ == 3:
            told = told[:-1]  # the last new file untold: the ids say so
        same = kept.sync(unit, ids, classes, keys, t, changed=np.array(told))
        assert same is kept and not kept.built
        assert_equals_fresh(kept, unit, ids, classes, keys, t)
    assert emptied not in set(entries(kept)[0].values()) | set(entries(kept)[1].values())


def test_the_keeper_trusts_dirty_rows_only_after_a_write_from_its_own_sync(
    tmp_path: Path,
) -> None:
    from daemon.index.keeper import Keeper

    unit, classes, ids, keys, _ = clustered(seed=3)
    t = threshold_for(unit, classes)
    keeper = Keeper(tmp_path / "s.duckdb", "m")
    keeper.search(np, unit, ids, classes, keys, t, "m", np.arange(len(ids)), 1)
    assert keeper.index is not None and not keeper.index.told  # built
    keeper.written(1)  # the pairs from that very snapshot were written
    moved = list(classes)
    moved[5] = classes[100]
    keeper.search(np, unit, ids, moved, keys, t, "m", np.array([5]), 2)
    assert keeper.index.told
    # Pairs written at a generation the index was not brought up to date at (the exact
    # path, another process): the dirty flags it cleared are lost to the index.
    keeper.written(3)
    moved[7] = classes[200]
    keeper.search(np, unit, ids, moved, keys, t, "m", np.empty(0, np.int64), 4)
    assert not keeper.index.told
    assert entries(keeper.index) == entries(build(unit, moved, ids, keys, t))
    keeper.release()
    assert not keeper.trusted and folders.index_path(tmp_path / "s.duckdb").exists()


def test_sharded_by_folder_equals_the_single_index() -> None:
    unit, classes, ids, keys, _ = clustered(seed=1)
    t = threshold_for(unit, classes)
    single = build(unit, classes, ids, keys, t)
    names = sorted(set(classes))
    shards = [build(unit, classes, ids, keys, t, owns=names[s::3]) for s in range(3)]
    assert sum(s.main.ntotal for s in shards) == single.main.ntotal
    assert sum(s.strays.ntotal for s in shards) == single.strays.ntotal
    assert all(0 < s.main.ntotal < single.main.ntotal for s in shards)
    assert_same(indexed(shards, unit, t), indexed([single], unit, t))
    rows = np.arange(0, len(unit), 7)
    assert_same(indexed(shards, unit, t, rows), indexed([single], unit, t, rows))


def test_saved_index_is_brought_up_to_date_when_loaded(tmp_path: Path) -> None:
    (unit, classes, ids, keys), (unit2, classes2, ids2, keys2) = changed_set(seed=2)
    t = threshold_for(unit, classes)
    path = folders.index_path(tmp_path / "facelint.duckdb")
    folders.save(build(unit, classes, ids, keys, t), path, "dlib")
    assert folders.load(path, "arcface", 32) is None  # another model's index is not used
    loaded = folders.load(path, "dlib", 32)
    assert loaded is not None and len(loaded) == len(ids)
    loaded = loaded.sync(unit2, ids2, classes2, keys2, t)
    assert not loaded.built
    fresh = build(unit2, classes2, ids2, keys2, t)
    assert_same(indexed([loaded], unit2, t), indexed([fresh], unit2, t))
    path.write_bytes(path.read_bytes()[:100])  # torn: rebuilt, not trusted
    assert folders.load(path, "dlib", 32) is None and not path.exists()


def pairs_of(db: Path) -> dict[tuple[str, str], float]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            """SELECT a.path, b.path, n.cosine FROM neighbors n
               JOIN files a ON a.id = n.src JOIN files b ON b.id = n.dst"""
        ).fetchall()
    finally:
        con.close()
    return {(r[0], r[1]): r[2] for r in rows}


def test_daemon_through_the_index_stores_the_exact_pairs(
    probe_everything: None, scanned_dev_loose: tuple[Path, Path], tmp_path: Path, run_scan
) -> None:
    from tests.conftest import LOOSE_THRESHOLD

    src_root, src_db = scanned_dev_loose
    trees = {}
    for mode in ("exact", "index"):
        root, db = tmp_path / mode / "data", tmp_path / mode / "facelint.duckdb"
        shutil.copytree(src_root, root, copy_function=shutil.copy2)
        shutil.copy2(src_db, db)
        trees[mode] = (root, db)
    want = pairs_of(trees["exact"][1])
    assert len(want) > 50
    for mode, (root, db) in trees.items():
        # Two relabels (moved files) in one daemon, then a rescore from scratch at another
        # threshold. The daemon's index reads every row the first time (it has just been
        # built), only the dirty ones the second (its pairs were written from the snapshot
        # it was brought up to date with).
        folder = sorted(p for p in root.iterdir() if p.is_dir())
        pipeline = Pipeline(Settings(root=root, db=db, threshold=LOOSE_THRESHOLD, candidates=mode))
        try:
            told = []
            for a, b in ((0, 1), (2, 0)):
                moved = sorted(x for x in folder[a].iterdir() if x.is_file())[0]
                moved.rename(folder[b] / moved.name)
                stats = pipeline.run()
                assert stats.encoded == 0 and not stats.full_compare
                if pipeline.index.index is not None:
                    told.append(pipeline.index.index.told)
        finally:
            pipeline.close()
        assert told == ([False, True] if mode == "index" else [])
        stats = run_scan(root, db, threshold=LOOSE_THRESHOLD + 0.05, candidates=mode)
        assert stats.full_compare
    got, want = pairs_of(trees["index"][1]), pairs_of(trees["exact"][1])
    assert got.keys() == want.keys() and len(want) > 20
    assert all(abs(got[k] - want[k]) < 1e-5 for k in want)
    assert folders.index_path(trees["index"][1]).exists()
    assert not folders.index_path(trees["exact"][1]).exists()


def test_the_setting_and_its_size_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not use_index("exact", 10**7, 512)
    assert use_index("index", 10, 8)
    n_auto = int(np.ceil(np.sqrt(AUTO_WORK / 128)))
    assert not use_index("auto", n_auto - 1, 128) and use_index("auto", n_auto, 128)
    monkeypatch.setattr(config, "find_spec", lambda name: None)
    with pytest.raises((ConfigError, ValueError), match="faiss is not installed"):
        Settings(candidates="index")
    assert Settings(candidates="auto").candidates == "auto"
    # Shards of the index are Ray actors: without a cluster named, said at once.
    from daemon.encoders.ray_pool import ClusterUnavailable
    from daemon.index.keeper import Keeper

    with pytest.raises(ClusterUnavailable, match="no Ray cluster is named: set ray_address"):
        Keeper(Path("s.duckdb"), "m", shards=Settings(index_shards=3).index_shards)


def test_centroid_search_past_its_size_finds_the_products_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from daemon.index import centroids
    from daemon.kinds.stats import above

    rng = np.random.default_rng(3)
    base = compare.normalise(rng.standard_normal((600, 32)).astype(np.float32))
    near = compare.normalise(base + 0.08 * rng.standard_normal(base.shape).astype(np.float32))
    cn = np.concatenate([base, near])  # 600 folder pairs that come close
    exclude = np.arange(len(cn))
    want_r, want_c = above(cn, cn, 0.8, exclude=exclude)  # the product (small: exact)
    assert centroids.above_indexed(cn, cn, 0.8, exclude) is None
    monkeypatch.setattr(centroids, "EXACT_WORK", 0)
    got_r, got_c = above(cn, cn, 0.8, exclude=exclude)
    want = set(zip(want_r.tolist(), want_c.tolist(), strict=True))
    got = set(zip(got_r.tolist(), got_c.tolist(), strict=True))
    assert len(want) >= 1000 and got <= want
    assert len(got) >= 0.99 * len(want)
    assert all(r != c for r, c in got)
