"""The comparison: tiled candidates, best-K lists, and incremental == full."""

from __future__ import annotations

import numpy as np
import pytest

from daemon import compare


def random_faces(rng: np.random.Generator, n: int, classes: int, d: int = 16):
    """Clustered unit vectors: a few 'people' per class and some shared across classes."""
    people = rng.standard_normal((max(2, n // 4), d)).astype(np.float32)
    who = rng.integers(0, len(people), n)
    vec = people[who] + 0.35 * rng.standard_normal((n, d)).astype(np.float32)
    return compare.normalise(vec), rng.integers(0, classes, n)


def as_set(src, dst, cos):
    return {(int(s), int(d)): round(float(c), 5) for s, d, c in zip(src, dst, cos, strict=True)}


def assert_same(got: dict, want: dict) -> None:
    # Tiles sum in another order than one big product: equal to float32 rounding.
    assert got.keys() == want.keys()
    assert all(abs(got[key] - want[key]) < 1e-4 for key in want)


def brute_force(unit, cls, t, k):
    sims = unit @ unit.T
    n = len(unit)
    out = {}
    counts = np.zeros(n, int)
    for i in range(n):
        cand = [
            (float(sims[i, j]), j)
            for j in range(n)
            if j != i and cls[j] != cls[i] and sims[i, j] >= t
        ]
        counts[i] = len(cand)
        for c, j in sorted(cand, key=lambda x: (-x[0], x[1]))[:k]:
            out[(i, j)] = round(c, 5)
    return out, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_lists_match_brute_force_across_tiles(seed):
    rng = np.random.default_rng(seed)
    unit, cls = random_faces(rng, 300, 12)
    lists = compare.full_lists(np, unit, cls, 0.6, 5)
    want, counts = brute_force(unit, cls, 0.6, 5)
    top = compare.TopK(len(unit), 5)
    for i, j, c in compare.cross_class_candidates(np, unit, cls, 0.6, tile_rows=37, tile_cols=53):
        top.add(np.r_[i, j], np.r_[j, i], np.r_[c, c])
    assert_same(as_set(*top.result()), want)
    assert_same(as_set(lists.src, lists.dst, lists.cos), want)
    assert np.array_equal(lists.candidates, counts)
    assert all(cls[s] != cls[d] for s, d in want)
    assert max(counts) > 5  # hubs exist, so the cap is exercised


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_incremental_lists_equal_a_full_recompute(seed):
    rng = np.random.default_rng(seed)
    n, k, t = 240, 4, 0.6
    unit, cls = random_faces(rng, n, 10)
    before = compare.full_lists(np, unit, cls, t, k)
    stored = as_set(before.src, before.dst, before.cos)
    # Change some rows: new content for a few, a relabel (new class) for others.
    dirty = np.sort(rng.choice(n, 12, replace=False))
    unit = unit.copy()
    cls = cls.copy()
    unit[dirty[:6]] = random_faces(rng, 6, 10)[0]
    cls[dirty[6:]] = (cls[dirty[6:]] + 1) % 10

    def stored_lists(holding, sources):
        holding, sources = set(holding.tolist()), set(sources.tolist())
        srcs = {s for (s, d) in stored if d in holding} | sources
        rows = [(s, d, c) for (s, d), c in stored.items() if s in srcs]
        if not rows:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        s, d, c = zip(*rows, strict=True)
        return np.array(s), np.array(d), np.array(c, np.float32)

    lists, widened = compare.incremental_lists(
        np, unit, cls, t, k, dirty, before.candidates, stored_lists
    )
    assert set(dirty) <= set(widened.tolist())
    merged = {key: c for key, c in stored.items() if key[0] not in set(lists.sources.tolist())}
    merged.update(as_set(lists.src, lists.dst, lists.cos))
    want, _ = brute_force(unit, cls, t, k)
    assert_same(merged, want)


def test_best_k_keeps_highest_per_source():
    src = np.array([0, 0, 0, 1, 1])
    dst = np.array([5, 6, 7, 8, 9])
    cos = np.array([0.5, 0.9, 0.7, 0.1, 0.2], np.float32)
    s, d, c = compare.best_k(src, dst, cos, 2)
    assert as_set(s, d, c) == {(0, 6): 0.9, (0, 7): 0.7, (1, 9): 0.2, (1, 8): 0.1}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_counts_do_not_grow_from_recomputed_neighbours(seed):
    # Rows re-marked dirty with the same content (a re-saved file): nothing really
    # changed, so no clean image may gain candidates. The hubs recomputed because they
    # held such a row must not count twice; only the changed row itself is uncertain
    # (whether it was among a hub's unstored candidates is not in the store): at most 1.
    rng = np.random.default_rng(seed)
    n, k, t = 400, 3, 0.5
    unit, cls = random_faces(rng, n, 10)
    before = compare.full_lists(np, unit, cls, t, k)
    assert (before.candidates > k).sum() > n // 2  # hubs exist, or the test shows nothing
    changed = np.sort(rng.choice(np.flatnonzero(before.candidates > k), 1, replace=False))

    def stored_lists(holding, sources):
        keep = np.isin(
            before.src, np.concatenate([before.src[np.isin(before.dst, holding)], sources])
        )
        return before.src[keep], before.dst[keep], before.cos[keep]

    lists, _ = compare.incremental_lists(
        np, unit, cls, t, k, changed, before.candidates, stored_lists
    )
    drift = lists.candidates - before.candidates[lists.sources]
    assert drift.min() >= 0
    assert drift.max() <= len(changed)
