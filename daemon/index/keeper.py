"""The daemon's folder index between refreshes: in memory, saved beside the store.

A pipeline holds one `Keeper`. The first refresh that searches the index loads the saved
file (or builds one); each later one only brings it up to date with what changed. It is
written back after a build, once enough entries changed since the last save, and when
the pipeline closes: a crash loses at most that much keeping, never a pair, since a
loaded index is checked against the faces before it is searched.

What changed comes from the daemon where it can be trusted: the store's dirty files are
those whose pairs were not written since they changed, so when the index was brought up
to date from the very snapshot whose pairs were last written (`written`), the next
snapshot's dirty rows (and the ids, for deletions) are everything that moved since, and
only they are read. Otherwise (a loaded index, a write the index took no part in) every
row is compared with what the index holds.

With `index_shards` > 1 the lists live in Ray actors (`daemon/index/shards.py`); such an
index is not saved (a restart builds it again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import numpy as np

from daemon.compare import Search, Triples
from daemon.encoders.ray_pool import ClusterUnavailable
from daemon.index import folders

log = logging.getLogger("facelint.index")

# Save once this fraction of the entries changed since the last save (a save writes every
# vector: at 1 M × 128 that is 0.5 GB, not something to do per new face).
SAVE_FRACTION = 0.05


class StandingKeys(Sequence[str]):
    """Each row's standing face as the index keys it (`content:face`), made only for the
    rows asked: a told sync reads a few, not a million."""

    def __init__(self, hashes: Sequence[str], face_index: np.ndarray):
        self.hashes, self.face_index = hashes, face_index

    def __len__(self) -> int:
        return len(self.hashes)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return f"{self.hashes[i]}:{int(self.face_index[i])}"


class Keeper:
    def __init__(self, db: Path, model: str, shards: int = 1, ray_address: str = ""):
        self.path = folders.index_path(db)
        self.model = model
        self.index: folders.FolderIndex | None = None
        self.shards = None
        if shards > 1:
            from daemon.index.shards import Shards

            self.shards = Shards(ray_address, shards)
        # The generation the index was last brought up to date at, and whether the dirty
        # rows of the next snapshot cover every change since (see the module's note).
        self.synced_at: int | None = None
        self.trusted = False

    def search(
        self,
        xp: ModuleType,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: Sequence[str],
        keys: Sequence[str],
        threshold: float,
        model: str,
        changed: np.ndarray | None = None,
        generation: int | None = None,
    ) -> Search:
        """The index, brought in line with these faces, as compare's candidate search.
        `changed`: the snapshot's dirty rows; `generation`: the snapshot's."""
        d = unit.shape[1]
        if self.index is None or self.index.d != d or model != self.model:
            self.model = model
            self.trusted = False
            if self.shards is not None:
                holders = self.shards.holders(d, 1024)
                self.index = folders.FolderIndex(d, 1024, holders=holders)
            else:
                self.index = folders.load(self.path, model, d) or folders.FolderIndex(d)
        told = changed if self.trusted else None
        try:
            self.index = self.index.sync(unit, ids, classes, keys, threshold, told, generation)
        except Exception as exc:
            self._lost(exc)
        self.synced_at = generation
        if self.index.built or self.index.unsaved > SAVE_FRACTION * max(len(self.index), 1):
            self.save()
        index = self.index

        def search(rows: np.ndarray | None) -> Iterator[Triples]:
            if self.shards is None:
                return folders.candidates([index], xp, unit, threshold, rows)
            return self._guarded(folders.candidates([index], xp, unit, threshold, rows))

        return search

    def _guarded(self, found: Iterator[Triples]) -> Iterator[Triples]:
        try:
            yield from found
        except Exception as exc:
            self._lost(exc)

    def _lost(self, exc: Exception) -> NoReturn:
        """A shard's actor failed (its node left, it ran out of memory): let go of them
        all, so that the next refresh builds the index again in new actors, and say so."""
        if self.shards is None:
            raise exc
        self.index = None
        self.trusted = False
        self.shards.close()
        raise ClusterUnavailable(
            f"the folder index's Ray actors failed ({type(exc).__name__}: {exc}); the next "
            "refresh builds it again"
        ) from exc

    def written(self, generation: int) -> None:
        """The pairs computed from the snapshot at `generation` were written (its dirty
        flags cleared): the index's word on what changed holds from here only if it was
        brought up to date from that snapshot."""
        self.trusted = self.index is not None and self.synced_at == generation

    def release(self) -> None:
        """Save and let go of the in-memory index (under "auto" only a full pass searches
        it: between full passes its copy of the vectors would only take memory)."""
        self.save()
        self.index = None
        self.trusted = False

    def close(self) -> None:
        self.save()
        if self.shards is not None:
            self.shards.close()
            self.index = None

    def save(self) -> None:
        if self.index is None or self.index.unsaved == 0 or self.shards is not None:
            return
        try:
            folders.save(self.index, self.path, self.model)
        except OSError as exc:  # a full disk costs a rebuild next start, not the refresh
            log.warning("could not save the index to %s: %s", self.path, exc)
