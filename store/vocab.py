"""facelint's vocabulary: the one spelling of every value the store keeps in a column.

These live in `store/` because they are stored values: the daemon writes them, the
dashboard and users' SQL read them, and `store/` is the one package both may import
(the dashboard never imports the daemon's internals; the store imports neither).
Being `StrEnum`s, members compare equal to the strings DuckDB returns, so a row read
back is `Kind(row.kind)` and an unknown value fails loudly there.
"""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """A suggestion's kind: which mistake it says the data holds."""

    SAME_PERSON = "same_person"  # two folders hold one person
    MISFILED = "misfiled"  # an image belongs in another folder
    STRANGER = "stranger"  # an image matches no one in its folder, nor any other folder
    DUPLICATE = "duplicate"  # the same file (identical bytes) in two folders


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
