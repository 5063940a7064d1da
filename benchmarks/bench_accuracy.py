"""How right the review queue is: plant mistakes in a labelled tree, run the real
pipeline, and score the suggestions against the plants and the labels.

    python benchmarks/bench_accuracy.py ROOT [--seeds 1 2 3] [--models dlib ...]
                                        [--splits 40 --misfiles 40 --duplicates 20]
                                        [--namesakes 0 --swaps 0]
                                        [--work DIR] [--out FILE]

ROOT is `ROOT/<identity>/<images>` or has a manifest.csv (`relpath,identity`, as
../shared/faces/*/manifest.csv). For each model the tree is scanned once (the encodings
are the expensive part); each seed then copies that store and a planted tree and runs
the pipeline again, which re-encodes nothing (content is known) and sees the plants as
moves and copies, the way a user's edits arrive.

Plants (docs/design.md, "Scoring a review queue"): split — a third of the images of a
person with 4–50 images moved to an alias folder; misfile — one image moved into
another person's folder; duplicate — a copy of an image in another folder. M = plants.
Mixed folders (docs/design.md, "Mixed folders"), planted after those with a stream of
their own (so the classic plants are the same with or without them): namesake — 3–10
images of a person with ≥ 12 moved into the folder of a person with 2–7; swap — a third
of each of two people with 6–40 images moved into the other's folder.

Printed per model and seed, then summed: plants found within the first 2×M open
suggestions (by kind), misfiles whose suggested destination is right, precision of the
first min(100, M) suggestions by the labels (right = two folders that share an identity,
an image whose identity differs from its folder's majority, identical copies), pairs
stored per true cross-folder pair, pair-ranking average precision, the time of each
step, and the highest suggestions that contradict the labels, for a person to judge
(LFW has labelling errors of its own). For the mixed folders, within the first
2 × (misplaced photos) open suggestions: misplaced photos sent home by one card (a mixed
card naming the photo's home folder with the photo in its group, or a misfiled card
naming it), merge traps (a same-person card over a planted folder pair), and a folder's
own photos flagged (a misfiled or stranger card on one, or one inside a mixed card's
group).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.config import Settings  # noqa: E402
from daemon.pipeline import Pipeline  # noqa: E402
from store.vocab import Kind  # noqa: E402

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass
class Plant:
    kind: str  # split | misfile | duplicate | namesake | swap
    person: str
    paths: list[str]  # planted paths (moved images, or the copy)
    # split: (person, alias); misfile: (from, into); dup: (orig, copy); namesake: (the
    # famous person's folder, the folder it went into); swap: the two folders
    folders: tuple[str, str]


MIXED_PLANTS = ("namesake", "swap")


@dataclass
class Tree:
    identity: dict[str, str]  # relpath -> identity ('' = unknown)
    plants: list[Plant] = field(default_factory=list)


def read_labels(root: Path) -> dict[str, str]:
    manifest = root / "manifest.csv"
    if manifest.exists():
        with manifest.open(encoding="utf-8") as f:
            return {r["relpath"]: r["identity"] for r in csv.DictReader(f)}
    out = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in EXTENSIONS and p.is_file():
            rel = p.relative_to(root).as_posix()
            out[rel] = rel.split("/")[0]
    return out


def copy_tree(src_root: Path, labels: dict[str, str], dest: Path, link: bool) -> None:
    for rel in labels:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copies even where a hard link would do: facelint skips files with several
        # names (daemon/inventory.py HARD_LINK). copy2 keeps the mtime, so the base store
        # still matches without hashing.
        shutil.copy2(src_root / rel, target)


def plant(
    root: Path,
    labels: dict[str, str],
    seed: int,
    n_split: int,
    n_mis: int,
    n_dup: int,
    n_namesake: int = 0,
    n_swap: int = 0,
) -> Tree:
    """Plant mistakes in the tree at root (a private copy): moves and copies on disk."""
    rng = np.random.default_rng(seed)
    identity = dict(labels)
    by_person: dict[str, list[str]] = defaultdict(list)
    for rel, who in labels.items():
        if who:
            by_person[who].append(rel)
    people = sorted(by_person)
    folder_of = {
        who: Counter(r.split("/")[0] for r in rels).most_common(1)[0][0]
        for who, rels in by_person.items()
    }
    tree = Tree(identity)
    eligible = [p for p in people if 4 <= len(by_person[p]) <= 50]
    rng.shuffle(eligible)
    split_people = eligible[:n_split]
    for who in split_people:
        rels = sorted(by_person[who])
        rng.shuffle(rels)
        moved = rels[: len(rels) // 3]
        alias = folder_of[who] + "_alias"
        new_paths = []
        for rel in moved:
            new = f"{alias}/{rel.split('/', 1)[1]}"
            _move(root, rel, new, identity)
            new_paths.append(new)
        tree.plants.append(Plant("split", who, new_paths, (folder_of[who], alias)))
    touched = set(split_people)
    candidates = [p for p in people if p not in touched and len(by_person[p]) >= 2]
    rng.shuffle(candidates)
    others = [p for p in people if p not in touched]
    for who in candidates[:n_mis]:
        if not any(p != who and p not in touched for p in others):
            # Fewer people than plants (55 East Asian people against 40 splits and 40
            # misfiles): the draw below would never end. Plant no more misfiles.
            break
        rel = sorted(by_person[who])[int(rng.integers(len(by_person[who])))]
        into = who
        while into == who or into in touched:
            into = others[int(rng.integers(len(others)))]
        touched.add(who)
        new = f"{folder_of[into]}/planted_{rel.split('/', 1)[1]}"
        _move(root, rel, new, identity)
        tree.plants.append(Plant("misfile", who, [new], (folder_of[who], folder_of[into])))
    pool = sorted(r for r, w in identity.items() if w)
    for _ in range(n_dup):
        rel = pool[int(rng.integers(len(pool)))]
        into = rel.split("/")[0]
        while into == rel.split("/")[0]:
            into = folder_of[people[int(rng.integers(len(people)))]]
        new = f"{into}/copy_{rel.split('/', 1)[1]}"
        if new in identity:
            continue
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, root / new)  # a copy: a hard link is skipped
        identity[new] = identity[rel]
        # Either copy may be named as the extra one (the first by path is "the original").
        tree.plants.append(Plant("duplicate", identity[rel], [new, rel], (rel.split("/")[0], into)))
    busy = {f for p in tree.plants for f in p.folders}
    _plant_mixed(
        root, identity, by_person, folder_of, touched, busy, seed, n_namesake, n_swap, tree
    )
    return tree


def _plant_mixed(
    root: Path,
    identity: dict[str, str],
    by_person: dict[str, list[str]],
    folder_of: dict[str, str],
    touched: set[str],
    busy: set[str],
    seed: int,
    n_namesake: int,
    n_swap: int,
    tree: Tree,
) -> None:
    """Namesakes and swaps, among people no other plant touched (their own stream)."""
    rng = np.random.default_rng([seed, 14])
    free = [p for p in sorted(by_person) if p not in touched and folder_of[p] not in busy]
    rng.shuffle(free)
    used: set[str] = set()

    def take(lo: int, hi: int) -> str | None:
        for p in free:
            if p not in used and lo <= len(by_person[p]) <= hi:
                used.add(p)
                return p
        return None

    for _ in range(n_namesake):
        famous, minor = take(12, 10**9), take(2, 7)
        if famous is None or minor is None:
            break
        rels = sorted(by_person[famous])
        rng.shuffle(rels)
        moved = rels[: int(rng.integers(3, 11))]
        into = folder_of[minor]
        paths = []
        for rel in moved:
            new = f"{into}/namesake_{rel.split('/', 1)[1]}"
            _move(root, rel, new, identity)
            paths.append(new)
        tree.plants.append(Plant("namesake", famous, paths, (folder_of[famous], into)))
    for _ in range(n_swap):
        one, two = take(6, 40), take(6, 40)
        if one is None or two is None:
            break
        a, b = folder_of[one], folder_of[two]
        moves = []
        for who, into in ((one, b), (two, a)):
            rels = sorted(by_person[who])
            rng.shuffle(rels)
            moves += [(rel, into) for rel in rels[: len(rels) // 3]]
        paths = []
        for rel, into in moves:
            new = f"{into}/swap_{rel.split('/', 1)[1]}"
            _move(root, rel, new, identity)
            paths.append(new)
        tree.plants.append(Plant("swap", f"{one}+{two}", paths, (a, b)))


def _move(root: Path, old: str, new: str, identity: dict[str, str]) -> None:
    (root / new).parent.mkdir(parents=True, exist_ok=True)
    os.rename(root / old, root / new)
    identity[new] = identity.pop(old)
    folder = (root / old).parent
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@dataclass
class Score:
    found: Counter = field(default_factory=Counter)
    planted: Counter = field(default_factory=Counter)
    dest_right: int = 0
    dest_named: int = 0
    precision_hits: int = 0
    precision_of: int = 0
    pairs: int = 0
    true_pairs: int = 0
    true_stored: int = 0
    ap: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    wrong: list[tuple] = field(default_factory=list)
    # Mixed folders (namesake, swap), within the first 2 × misplaced photos.
    misplaced: int = 0
    sent_home: int = 0
    mixed_pairs: int = 0
    merge_traps: int = 0
    native: int = 0  # the planted folders' own photos
    native_flagged: int = 0
    mixed_missed: list[str] = field(default_factory=list)


def score(db: Path, tree: Tree) -> Score:
    out = Score()
    con = duckdb.connect(str(db), read_only=True)
    try:
        queue = con.execute(
            """SELECT kind, class_a, class_b, path, rank_score, evidence, id FROM suggestions
               WHERE state = 'open' ORDER BY rank_score DESC, id"""
        ).fetchall()
        pairs = con.execute(
            "SELECT path_a, path_b, class_a, class_b, score FROM pairs ORDER BY score DESC"
        ).fetchall()
        files = con.execute("SELECT path, class FROM files").fetchall()
        group_rows = con.execute(
            """SELECT DISTINCT e.id, e.path_a FROM suggestion_evidence e
               JOIN suggestions s ON s.id = e.id WHERE s.kind = 'mixed'"""
        ).fetchall()
    finally:
        con.close()
    groups: dict[str, set[str]] = defaultdict(set)
    for sid, path in group_rows:
        groups[sid].add(path)
    identity = tree.identity
    members: dict[str, list[str]] = defaultdict(list)
    for path, klass in files:
        members[klass].append(path)

    def folder_identity(klass: str) -> str:
        count = Counter(identity.get(p, "") for p in members[klass] if identity.get(p))
        if not count:
            return ""
        top = max(count.values())
        base = klass.removesuffix("_alias")
        if count.get(base, 0) == top or base in planted_into:
            # A namesake's photos may outnumber the folder's own person: the folder is
            # still its name's.
            return base
        return count.most_common(1)[0][0]

    planted_into = {f for p in tree.plants if p.kind in MIXED_PLANTS for f in p.folders}

    def right(kind: str, a: str, b: str | None, path: str | None, sid: str = "") -> bool:
        if kind == Kind.DUPLICATE:
            return True
        if kind == Kind.MIXED:
            own = folder_identity(a)
            group = groups.get(sid, set())
            others = sum(identity.get(q, "") not in ("", own) for q in group)
            return 2 * others > len(group)
        if kind == Kind.SAME_PERSON:
            ids_a = {identity.get(p) for p in members[a]} - {"", None}
            ids_b = {identity.get(p) for p in members[b or ""]} - {"", None}
            return bool(ids_a & ids_b)
        who = identity.get(path or "", "")
        return bool(who) and who != folder_identity(a)

    classic = [p for p in tree.plants if p.kind not in MIXED_PLANTS]
    m = len(classic)
    head = queue[: 2 * m]
    for p in classic:
        out.planted[p.kind] += 1
        hit = False
        for kind, a, b, path, _, _, _ in head:
            if p.kind == "split":
                hit |= kind == Kind.SAME_PERSON and {a, b} == set(p.folders)
                hit |= kind in (Kind.MISFILED, Kind.STRANGER) and path in p.paths
            elif p.kind == "misfile":
                if kind in (Kind.MISFILED, Kind.STRANGER) and path == p.paths[0]:
                    hit = True
                    if kind == Kind.MISFILED:
                        out.dest_named += 1
                        out.dest_right += b == p.folders[0]
            else:
                hit |= kind == Kind.DUPLICATE and path in p.paths
                hit |= kind == Kind.SAME_PERSON and {a, b} == set(p.folders)
        out.found[p.kind] += hit
    _score_mixed(out, tree, queue, groups, members, folder_identity)
    first = queue[: min(100, len(tree.plants))]
    out.precision_of = len(first)
    for kind, a, b, path, conf, evidence, sid in first:
        ok = right(kind, a, b, path, sid)
        out.precision_hits += ok
        if not ok:
            out.wrong.append((kind, a, b, path, round(conf, 3), evidence))
    # Pairs: true when both images carry one identity (they are in different folders).
    by_identity: dict[str, Counter] = defaultdict(Counter)
    for path, klass in files:
        who = identity.get(path, "")
        if who:
            by_identity[who][klass] += 1
    for counts in by_identity.values():
        total = sum(counts.values())
        out.true_pairs += (total * total - sum(c * c for c in counts.values())) // 2
    out.pairs = len(pairs)
    hits = 0
    precision_sum = 0.0
    for rank, (pa, pb, _, _, _) in enumerate(pairs, 1):
        if identity.get(pa) and identity.get(pa) == identity.get(pb):
            hits += 1
            precision_sum += hits / rank
    out.true_stored = hits
    out.ap = precision_sum / max(out.true_pairs, 1)
    return out


def _score_mixed(
    out: Score,
    tree: Tree,
    queue: list[tuple],
    groups: dict[str, set[str]],
    members: dict[str, list[str]],
    folder_identity: Callable[[str], str],
) -> None:
    """Mixed folders: misplaced photos sent home, merge traps, own photos flagged."""
    identity = tree.identity
    mixed = [p for p in tree.plants if p.kind in MIXED_PLANTS]
    if not mixed:
        return
    # Where each person lives: its folder before the plants (namesake: the famous
    # person's folder; swap: each one's own).
    home: dict[str, str] = {}
    for p in mixed:
        for path in p.paths:
            home[path] = next(f for f in p.folders if f != path.split("/")[0])
    out.misplaced = len(home)
    out.mixed_pairs = len(mixed)
    planted_folders = {f for p in mixed for f in p.folders}
    natives = {
        q
        for f in planted_folders
        for q in members.get(f, [])
        if identity.get(q) and identity.get(q) == folder_identity(f) and q not in home
    }
    out.native = len(natives)
    head = queue[: 2 * out.misplaced]
    pairs = {frozenset(p.folders) for p in mixed}
    fixed: set[str] = set()
    flagged: set[str] = set()
    for kind, a, b, path, _, _, sid in head:
        if kind == Kind.SAME_PERSON and frozenset((a, b)) in pairs:
            out.merge_traps += 1
        elif kind == Kind.MISFILED and path in home and home[path] == b:
            fixed.add(path)
        elif kind in (Kind.MISFILED, Kind.STRANGER) and path in natives:
            flagged.add(path)
        elif kind == Kind.MIXED:
            group = groups.get(sid, set())
            fixed |= {q for q in group if q in home and home[q] == b}
            flagged |= group & natives
    out.sent_home = len(fixed)
    out.native_flagged = len(flagged)
    # What a person would look at: the plants not wholly sent home, with the cards that
    # name their folders.
    for p in mixed:
        missed = [q for q in p.paths if q not in fixed]
        if not missed:
            continue
        about = [
            f"{kind} {conf:.2f} {a}/{b or '-'}"
            + (f" ({len(groups.get(sid, ()))} photos)" if kind == Kind.MIXED else "")
            for rank, (kind, a, b, path, conf, _, sid) in enumerate(queue)
            if (a in p.folders or b in p.folders) and rank < 4 * out.misplaced
        ]
        out.mixed_missed.append(
            f"{p.kind} {p.folders[0]} -> {p.folders[1]}: {len(missed)} of {len(p.paths)} "
            f"not sent home; cards: {'; '.join(about[:4]) or 'none'}"
        )


def run_model(
    args: argparse.Namespace, model: str, labels: dict[str, str], work: Path, lines: list[str]
) -> list[Score]:
    base_root = work / f"{model}-base" / "data"
    base_db = work / f"{model}-base" / "facelint.duckdb"
    settings = {"model": model} if model != "dlib" else {}
    if not base_db.exists():
        copy_tree(args.root, labels, base_root, link=False)
        t0 = time.monotonic()
        pipeline = Pipeline(Settings(root=base_root, db=base_db, **settings))
        try:
            stats = pipeline.run()
        finally:
            pipeline.close()
        lines.append(
            f"[{model}] first scan of {len(labels)} images: {time.monotonic() - t0:.1f} s "
            f"({stats.encoded} encoded in {stats.encode_seconds:.1f} s)"
        )
    scores = []
    for seed in args.seeds:
        seed_dir = work / f"{model}-seed{seed}"
        shutil.rmtree(seed_dir, ignore_errors=True)
        root = seed_dir / "data"
        copy_tree(base_root, labels, root, link=True)
        db = seed_dir / "facelint.duckdb"
        shutil.copy2(base_db, db)
        tree = plant(
            root,
            labels,
            seed,
            args.splits,
            args.misfiles,
            args.duplicates,
            args.namesakes,
            args.swaps,
        )
        t0 = time.monotonic()
        pipeline = Pipeline(Settings(root=root, db=db, **settings))
        try:
            stats = pipeline.run()
        finally:
            pipeline.close()
        wall = time.monotonic() - t0
        sc = score(db, tree)
        sc.seconds = {
            "scan": wall,
            "read": stats.read_seconds,
            "compute": stats.compute_seconds,
            "write": stats.write_seconds,
            "longest_write": pipeline.longest_write,
        }
        scores.append(sc)
        lines.extend(describe(f"[{model}] seed {seed}", sc, stats.suggestions))
    return scores


def describe(title: str, sc: Score, suggestions: int | None = None) -> list[str]:
    m = sum(sc.planted.values())
    found = sum(sc.found.values())
    by_kind = ", ".join(f"{k} {sc.found[k]}/{sc.planted[k]}" for k in sorted(sc.planted))
    lines = [
        f"{title}: {m} classic plants; found within the first {2 * m}: {found}/{m} "
        f"({found / max(m, 1):.1%}; {by_kind})",
        f"  misfile destinations right: {sc.dest_right}/{sc.dest_named} named "
        f"(of {sc.planted['misfile']} misfiles)",
        f"  precision of the first {sc.precision_of}: {sc.precision_hits}/{sc.precision_of} "
        f"({sc.precision_hits / max(sc.precision_of, 1):.1%})",
        f"  pairs stored {sc.pairs} for {sc.true_pairs} true cross-folder pairs "
        f"({sc.pairs / max(sc.true_pairs, 1):.2f} per true pair; {sc.true_stored} true "
        f"stored); pair-ranking AP {sc.ap:.3f}",
    ]
    if sc.mixed_pairs:
        lines.append(
            f"  mixed folders ({sc.mixed_pairs} planted pairs, {sc.misplaced} misplaced photos), "
            f"within the first {2 * sc.misplaced}: sent home by one card {sc.sent_home}/"
            f"{sc.misplaced} ({sc.sent_home / max(sc.misplaced, 1):.1%}); merge traps "
            f"{sc.merge_traps}/{sc.mixed_pairs} ({sc.merge_traps / sc.mixed_pairs:.1%}); own "
            f"photos flagged {sc.native_flagged} of {sc.native} "
            f"({sc.native_flagged / max(sc.misplaced, 1):.1%} of the misplaced count)"
        )
    for line in sc.mixed_missed[:10]:
        lines.append(f"  mixed plant: {line}")
    if suggestions is not None:
        lines.append(f"  suggestions computed: {suggestions}")
    if sc.seconds:
        lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in sc.seconds.items()))
    for kind, a, b, path, conf, evidence in sc.wrong[:10]:
        lines.append(f"  against the labels: {kind} {conf} {a} / {b or '-'} {path or ''}")
        lines.append(f"      {evidence}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a labelled tree (ROOT/<identity>/...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--models", nargs="+", default=["dlib"], help="dlib, arcface")
    parser.add_argument("--splits", type=int, default=40)
    parser.add_argument("--misfiles", type=int, default=40)
    parser.add_argument("--duplicates", type=int, default=20)
    parser.add_argument("--namesakes", type=int, default=0)
    parser.add_argument("--swaps", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep stores here (reused across runs)")
    parser.add_argument("--out", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    labels = read_labels(args.root)
    if not labels:
        parser.error(f"no labelled images under {args.root}")
    work = args.work or Path(tempfile.mkdtemp(prefix="facelint-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    lines = [
        f"bench_accuracy {args.root} ({len(labels)} images), seeds {args.seeds}, "
        f"plants per seed: up to {args.splits} splits, {args.misfiles} misfiles, "
        f"{args.duplicates} duplicates, {args.namesakes} namesakes, {args.swaps} swaps; "
        f"{time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs"
    ]
    for model in args.models:
        scores = run_model(args, model, labels, work, lines)
        total = Score()
        for sc in scores:
            total.found.update(sc.found)
            total.planted.update(sc.planted)
            total.dest_right += sc.dest_right
            total.dest_named += sc.dest_named
            total.precision_hits += sc.precision_hits
            total.precision_of += sc.precision_of
            total.pairs += sc.pairs
            total.true_pairs += sc.true_pairs
            total.true_stored += sc.true_stored
            for name in ("misplaced", "sent_home", "mixed_pairs", "merge_traps"):
                setattr(total, name, getattr(total, name) + getattr(sc, name))
            total.native += sc.native
            total.native_flagged += sc.native_flagged
        total.ap = float(np.mean([sc.ap for sc in scores]))
        lines.extend(describe(f"[{model}] all seeds", total))
        for line in lines:
            print(line)
        lines_out = list(lines)
        lines.clear()
        if args.out:
            with args.out.open("a", encoding="utf-8") as f:
                f.write("\n".join(lines_out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
