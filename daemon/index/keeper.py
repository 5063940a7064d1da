"""The daemon's folder index between refreshes: in memory, saved beside the store.

A pipeline holds one `Keeper`. The first refresh that searches the index loads the saved
file (or builds one); each later one only brings it up to date with what changed. It is
written back after a build, once enough entries changed since the last save, and when
the pipeline closes: a crash loses at most that much keeping, never a pair, since a
loaded index is checked against the faces before it is searched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from daemon.compare import Search, Triples
from daemon.index import folders

log = logging.getLogger("facelint.index")

# Save once this fraction of the entries changed since the last save (a save writes every
# vector: at 1 M × 128 that is 0.5 GB, not something to do per new face).
SAVE_FRACTION = 0.05


class Keeper:
    def __init__(self, db: Path, model: str):
        self.path = folders.index_path(db)
        self.model = model
        self.index: folders.FolderIndex | None = None

    def search(
        self,
        xp: ModuleType,
        unit: np.ndarray,
        ids: np.ndarray,
        classes: Sequence[str],
        keys: Sequence[str],
        threshold: float,
        model: str,
    ) -> Search:
        """The index, brought in line with these faces, as compare's candidate search."""
        d = unit.shape[1]
        if self.index is None or self.index.d != d or model != self.model:
            self.model = model
            self.index = folders.load(self.path, model, d) or folders.FolderIndex(d)
        self.index = self.index.sync(unit, ids, classes, keys, threshold)
        if self.index.built or self.index.unsaved > SAVE_FRACTION * max(len(self.index), 1):
            self.save()
        index = self.index

        def search(rows: np.ndarray | None) -> Iterator[Triples]:
            return folders.candidates([index], xp, unit, threshold, rows)

        return search

    def release(self) -> None:
        """Save and let go of the in-memory index (under "auto" only a full pass searches
        it: between full passes its copy of the vectors would only take memory)."""
        self.save()
        self.index = None

    def save(self) -> None:
        if self.index is None or self.index.unsaved == 0:
            return
        try:
            folders.save(self.index, self.path, self.model)
        except OSError as exc:  # a full disk costs a rebuild next start, not the refresh
            log.warning("could not save the index to %s: %s", self.path, exc)
