"""facelint's vocabulary: the one spelling of every value the store keeps in a column.

These live in `store/` because they are stored values: the daemon writes them, the
dashboard and users' SQL read them, and `store/` is the one package both may import
(the dashboard never imports the daemon's internals; the store imports neither).
Being `StrEnum`s, members compare equal to the strings DuckDB returns, so a row read
back is `Kind(row.kind)` and an unknown value fails loudly there.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """What encoding an image gave."""

    OK = "ok"
    NO_FACE = "no_face"
    MULTI_FACE = "multi_face"  # several faces: one stands for the image
    UNREADABLE = "unreadable"
    ERROR = "error"
    # Never stored: the file vanished between the event and the read.
    MISSING = "missing"


# Encodings with faces to compare.
USABLE = (Status.OK, Status.MULTI_FACE)
# Encodings that failed (not "no face": that is an answer about the image).
FAILED = (Status.UNREADABLE, Status.ERROR)


class Decision(StrEnum):
    """A reviewer's decision, on a pair of images or on a suggestion: one vocabulary."""

    # On a pair of images.
    SAME = "same"  # same person
    DIFFERENT = "different"  # different people
    REMOVED = "removed"  # one image was quarantined
    # On a suggestion.
    ACCEPTED = "accepted"  # the mistake is real and fixed (files moved)
    # The mistake is real, but nothing was fixed (file actions were off): it waits on the
    # Review page as "to fix" until someone fixes it with file actions on.
    CONFIRMED = "confirmed"
    REJECTED = "rejected"  # no mistake
    # Either: not now. It leaves the queue and waits under its own filter.
    SKIPPED = "skipped"


PAIR_DECISIONS = (Decision.SAME, Decision.DIFFERENT, Decision.REMOVED, Decision.SKIPPED)
SUGGESTION_DECISIONS = (
    Decision.ACCEPTED,
    Decision.CONFIRMED,
    Decision.REJECTED,
    Decision.SKIPPED,
)


@dataclass(frozen=True)
class Rules:
    """What the store must know of a suggestion kind, declared with its `Kind` member (the
    one line a kind adds here): how its id is spelled, which of the id's parts are folder
    ids (the backup translates them, store/backup.py), and what a decision on it says of
    the image pairs under it (store/suggestions.py: `decide`). The store reads these with
    the kind it already reads off a row, so it needs nothing of the daemon's kinds."""

    prefix: str  # an id is `<prefix>:<part>:<part>`
    # The id's parts that are folder ids; one that is not all digits names no folder (a
    # mixed group no folder holds: `new-<digest>`).
    folders: tuple[int, ...]
    paired: bool = False  # its two folder parts are one pair: smaller id first
    accepted: Decision | None = Decision.SAME  # what accepting (or confirming) says of its pairs
    rejected: Decision | None = Decision.DIFFERENT  # ... and rejecting
    # Accepting says it only when the decision's target is the suggestion's folder B: a
    # group moved elsewhere (or quarantined) is not B's person, nor anyone's said person.
    into_b_only: bool = False

    def id(self, *parts: object) -> str:
        """`<prefix>:<part>:<part>`, a pair of folder ids smaller first."""
        spelled = [str(p) for p in parts]
        pair = [spelled[i - 1] for i in self.folders]
        if self.paired and all(p.isdigit() for p in pair):
            for i, value in zip(self.folders, sorted(map(int, pair)), strict=True):
                spelled[i - 1] = str(value)
        return ":".join([self.prefix, *spelled])


class Kind(StrEnum):
    """A suggestion's kind: which mistake it says the data holds, and its `Rules`. A kind
    is this one member, daemon/kinds/<value>.py and dashboard/cards/<value>.py."""

    rules: Rules

    def __new__(cls, value: str, rules: Rules) -> Kind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.rules = rules
        return member

    # two folders hold one person
    SAME_PERSON = "same_person", Rules("same", (1, 2), paired=True)
    # an image belongs in another folder
    MISFILED = "misfiled", Rules("misfiled", (2,))
    # an image matches no one in its folder, nor any other folder: its pairs say nothing
    STRANGER = "stranger", Rules("stranger", (2,), accepted=None, rejected=None)
    # the same file (identical bytes) in two folders
    DUPLICATE = "duplicate", Rules("duplicate", (2,))
    # a folder holds a group of another person's photos
    MIXED = "mixed", Rules("mixed", (1, 2), into_b_only=True)


class State(StrEnum):
    """Where a suggestion stands in the review: open, or the decision made on it."""

    OPEN = "open"
    ACCEPTED = Decision.ACCEPTED.value
    CONFIRMED = Decision.CONFIRMED.value  # "confirmed, not fixed": listed as "to fix"
    REJECTED = Decision.REJECTED.value
    SKIPPED = Decision.SKIPPED.value


class Model(StrEnum):
    """The face models facelint can encode with (settings' `model`). A stored model id is
    longer (`dlib:…`, `arcface:…`): daemon/encoders/registry.py makes it from these."""

    DLIB = "dlib"
    ARCFACE = "arcface"
