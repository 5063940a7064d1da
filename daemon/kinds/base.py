"""What a suggestion kind is, for the daemon: its `Kind`, its stable id, how it finds its
suggestions, its evidence in words and the image pairs behind it.

A kind finds its suggestions one of two ways. `FromStatistics`: a test on the faces
(daemon/kinds/stats.py) gives `Found` suggestions in folder codes and file indices, and
the kind says each in the store's keys (`describe`). `FromSnapshot`: read straight off
the snapshot, no model needed (`survey`), and it may keep files out of the statistics.

Ids are stable across rescans, moves, folder renames, restarts and a model switch: they
use folder ids (which survive renames, store/folders.py) and content hashes, never paths
or file ids, and a stored decision is keyed by them, so their formats never change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from daemon.kinds.stats import EVIDENCE_PAIRS, Found, Statistics
from daemon.snapshot import Snapshot
from store.scores import Calibration
from store.suggestions import SuggestionRow
from store.vocab import Kind

# (suggestion id, file id, file id, score): an image pair shown under a suggestion.
EvidencePair = tuple[str, int, int, float]


@dataclass(frozen=True)
class Described:
    """A suggestion in the store's keys and in words, with its image pairs."""

    row: SuggestionRow
    pairs: list[EvidencePair] = field(default_factory=list)


@dataclass(frozen=True)
class Survey:
    """What a `FromSnapshot` kind read off a snapshot: its suggestions, and the files it
    keeps out of the statistics (file ids)."""

    found: list[Described] = field(default_factory=list)
    left_out: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Scene:
    """What a kind needs to say a `Found` in the store's keys and in words: the faces the
    statistics saw (by their index there), their folders by code, and the scoring."""

    snap: Snapshot
    unit: np.ndarray  # the faces' unit vectors (raw, not centred)
    ids: np.ndarray  # their file ids
    hashes: Sequence[str]  # their contents
    names: np.ndarray  # folder code -> class name
    members: Mapping[int, list[int]]  # folder code -> face indices
    folder_of_class: dict[str, int]
    cal: Calibration
    threshold: float
    model: str

    def name(self, code: int) -> str | None:
        return str(self.names[code]) if code >= 0 else None

    def folder(self, code: int) -> int | None:
        name = self.name(code)
        return self.folder_of_class[name] if name is not None else None

    def path(self, face: int) -> str:
        return file_path(self.snap, int(self.ids[face]))

    def block(self, left: list[int], right: list[int]) -> tuple[str, list[tuple[int, int, float]]]:
        """ "17 of 20 image pairs ≥ 0.4, median 0.63" and the best pairs, for two groups."""
        if not left or not right:
            return "no other image to compare with", []
        scores = self.cal.score(self.unit[left] @ self.unit[right].T)
        flat = scores.ravel()
        above = int((flat >= self.threshold).sum())
        text = (
            f"{above} of {len(flat)} image pair{'s' if len(flat) != 1 else ''} ≥ "
            f"{self.threshold:g}, median {float(np.median(flat)):.2f}, "
            f"best {float(flat.max()):.2f}"
        )
        # Stable: equal scores (copies in one folder) come in the members' content order.
        best = np.argsort(-flat, kind="stable")[:EVIDENCE_PAIRS]
        pairs = [
            (left[b // len(right)], right[b % len(right)], float(flat[b])) for b in best.tolist()
        ]
        return text, pairs

    def evidence(self, sid: str, pairs: list[tuple[int, int, float]]) -> list[EvidencePair]:
        """Pairs of face indices, in file ids under the suggestion's id."""
        return [(sid, int(self.ids[p]), int(self.ids[q]), sc) for p, q, sc in pairs]


def file_path(snap: Snapshot, file_id: int) -> str:
    pos = int(np.searchsorted(snap.file_ids, file_id))
    return snap.file_paths[pos]


def image_id(kind: Kind, content: str, folder: int) -> str:
    """`<prefix>:<content hash>:<folder id>`: an image suggestion, by content and folder."""
    return kind.rules.id(content, folder)


class SuggestionKind(ABC):
    """One kind of suggestion: daemon/kinds/<kind>.py holds one, named after its `Kind`."""

    kind: ClassVar[Kind]

    def by_name(self, snap: Snapshot, folder_of_class: dict[str, int]) -> list[Described]:
        """Suggestions the folders' names alone make certain, whatever the faces say. One
        the faces found too keeps one row: the names' evidence, then the faces'."""
        return []


class FromStatistics(SuggestionKind):
    """A kind found by a test on the faces."""

    @abstractmethod
    def find(self, stats: Statistics) -> list[Found]:
        """Its suggestions at MIN_CONFIDENCE or above. An image gets one suggestion of
        all the kinds that name it: the likeliest (daemon/kinds/registry.py)."""

    @abstractmethod
    def describe(self, found: Found, scene: Scene) -> Described:
        """The suggestion's row (id, keys, evidence in words) and its image pairs."""

    def row(
        self,
        found: Found,
        scene: Scene,
        sid: str,
        folders: tuple[int | None, int | None],
        names: tuple[str | None, str | None],
        evidence: str,
        image: int | None = None,
    ) -> SuggestionRow:
        """The stored row of what the test found: its id, its two folders (ids, names),
        its words, and for an image kind the image (a face index of the scene)."""
        return SuggestionRow(
            id=sid,
            kind=self.kind,
            model=scene.model,
            folder_a=folders[0],
            folder_b=folders[1],
            hash=None if image is None else scene.hashes[image],
            file_id=None if image is None else int(scene.ids[image]),
            rank_score=found.confidence,
            strength=found.stat,
            images=found.images,
            evidence=evidence,
            class_a_name=names[0],
            class_b_name=names[1],
            path_name=None if image is None else scene.path(image),
        )


class FromSnapshot(SuggestionKind):
    """A kind read off the snapshot, no model needed."""

    @abstractmethod
    def survey(
        self,
        snap: Snapshot,
        folder_of_class: dict[str, int],
        unit: np.ndarray | None = None,
        cal: Calibration | None = None,
    ) -> Survey:
        """`unit`: the standing face of each file of snap.faces (unit length), and `cal`
        the scoring, for a kind that lets the faces settle what the snapshot cannot."""
