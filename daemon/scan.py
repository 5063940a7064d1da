"""The scan step: what changed on disk (detect), written to the store (apply).

`detect` reads the stored rows it compares with in one read-only connection, together
with what the rest of the run needs to know before it writes anything (content still to
encode, the store's generation and totals): a batch where nothing changed opens the store
once, read-only, and writes nothing. `apply` writes the diff in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon import inventory
from daemon.config import Settings
from daemon.runstats import RunStats
from store import catalog, embeddings, matches, meta
from store.clock import utcnow
from store.db import Store


@dataclass
class Totals:
    """The store's size, as `facelint status` and the status file show it."""

    images: int = 0
    pairs: int = 0
    encoded_total: int = 0


@dataclass
class Detected:
    diff: inventory.Diff
    # Content the configured model has yet to encode (a crash, a model switch, an error
    # to retry), with the generation and totals: read in the same open when the disk looks
    # as the store has it (the batch may change nothing); None when not read (apply reads
    # it in its own transaction).
    todo: list[tuple[str, str]] | None
    generation: int
    totals: Totals


def _read_pending(con, model: str) -> tuple[list[tuple[str, str]], int, Totals]:
    totals = Totals(
        images=catalog.count_files(con),
        pairs=matches.count_pairs(con),
        encoded_total=meta.get_counter(con, "encoded_total"),
    )
    return (
        embeddings.hashes_to_encode(con, model),
        meta.get_counter(con, "generation"),
        totals,
    )


def _looks_unchanged(disk: list[inventory.DiskFile], stored: dict[str, catalog.FileRow]) -> bool:
    """Whether the diff can only be empty: every file on disk stored with its size and
    mtime, and no stored one gone. Costs no hashing."""
    if len(stored) > len(disk):
        return False
    for f in disk:
        old = stored.get(f.path)
        if old is None or old.size != f.size or old.mtime_ns != f.mtime_ns:
            return False
    return True


def read_pending(store: Store, model: str) -> Detected:
    """What detect reads when the disk looks unchanged, on its own (a rare second open)."""
    with store.reading() as con:
        todo, generation, totals = _read_pending(con, model)
    return Detected(inventory.Diff(), todo, generation, totals)


def detect(
    settings: Settings,
    store: Store,
    model: str,
    stats: RunStats,
    paths: list[str] | None = None,
    folders: Sequence[str] = (),
) -> Detected:
    """Compare the disk with the store: the whole tree (paths=None), or only the given
    root-relative paths and folders (the daemon's events), by the scan's one rule
    (`inventory.check_path`)."""
    root = Path(settings.root)
    skipped = stats.skipped
    wanted: set[str] = set()
    disk_by_path: dict[str, inventory.DiskFile] = {}
    if paths is None:
        root.mkdir(parents=True, exist_ok=True)
        disk = list(inventory.walk(root, settings.extensions, settings.quarantine, skipped))
    else:
        for p in paths:
            f, why = inventory.check_path(root, p, settings.extensions, settings.quarantine)
            if why is not None:
                skipped.append((inventory.printable(p), why))
            if inventory.is_tracked(p, settings.extensions, settings.quarantine):
                wanted.add(p)  # a stored row for it goes unless the file is tracked
            if f is not None:
                disk_by_path[p] = f
        for folder in folders:
            if (root / folder).is_dir():
                for f in inventory.walk(
                    root, settings.extensions, settings.quarantine, skipped, start=folder
                ):
                    disk_by_path[f.path] = f
        disk = list(disk_by_path.values())
    stored: dict[str, catalog.FileRow] = {}
    todo: list[tuple[str, str]] | None = None
    generation = 0
    totals = Totals()
    if store.exists():
        with store.reading() as con:
            if paths is None:
                stored = catalog.load_files(con)
            else:
                stored = catalog.load_files(con, wanted | set(disk_by_path))
                for folder in folders:
                    stored.update(catalog.load_files_under(con, folder))
            if _looks_unchanged(disk, stored):
                todo, generation, totals = _read_pending(con, model)
    if paths is None and not disk and stored and not settings.allow_empty:
        raise inventory.EmptyRoot(root, len(stored))
    stats.scanned = len(disk)
    return Detected(inventory.diff(root, disk, stored, skipped), todo, generation, totals)


def apply(
    settings: Settings, store: Store, model: str, detected: Detected, stats: RunStats
) -> list[tuple[str, str]] | None:
    """Write the diff in one transaction; returns the content still to encode, read in
    that same transaction (or, when there was nothing to write, what detect read)."""
    diff = detected.diff
    stats.new, stats.moved = len(diff.new), len(diff.moved)
    stats.changed, stats.touched = len(diff.changed), len(diff.touched)
    stats.removed = len(diff.removed)
    if diff.is_empty():
        return detected.todo
    now = utcnow()
    k = settings.max_pairs_per_image
    with store.writing() as con:
        if meta.get_meta(con, "model") is None:
            # A new store serves the configured model from the start; an existing one
            # goes on serving its model until a switch is complete (refresh).
            meta.set_meta(con, model=model)
        meta.set_meta(con, max_pairs_per_image=k)
        stored_classes = catalog.classes_of(con, [i for i, _ in diff.moved])
        stats.pairs_removed += matches.forget_matches(con, diff.removed, k, delete_files=True)
        updates = [
            (i, f.path, f.klass, f.size, f.mtime_ns, None, stored_classes.get(i) != f.klass)
            for i, f in diff.moved
        ]
        updates += [(i, f.path, f.klass, f.size, f.mtime_ns, h, True) for i, f, h in diff.changed]
        updates += [(i, f.path, f.klass, f.size, f.mtime_ns, None, False) for i, f in diff.touched]
        catalog.update_files(con, updates, now)
        catalog.add_files(con, [(f.path, f.klass, f.size, f.mtime_ns, h) for f, h in diff.new], now)
        meta.bump_counter(con, "generation", 1)
        todo = embeddings.hashes_to_encode(con, model)
    missing = {h for h, _ in todo}
    # Content already encoded under this model is reused, never re-encoded.
    stats.reused = stats.moved + sum(1 for _, h in diff.new if h not in missing)
    stats.reused += sum(1 for _, _, h in diff.changed if h not in missing)
    return todo
