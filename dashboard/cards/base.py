"""What every card shares: the suggestion and the images it shows, loaded with the page;
the card protocol (its title, choices, drawing and what a decision does); and the pieces
its drawing is made of."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import duckdb
import streamlit as st

from dashboard import actions, ui
from dashboard.actions import Done
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.queries.images import ImageInfo
from store.suggestions import Suggestion
from store.vocab import Decision, Kind

THUMB = 96  # a face in a folder's strip
FACE = 170  # the image a card is about
PHOTO = 100  # ... and its whole photo beside it
STRIP = 8  # faces shown per folder of a same-person card (two rows in half a card)
STRIP_COLUMNS = 4
ROW = 6  # faces in a folder's strip beside an image: one row

# The toolbar's values (dashboard/views/mistakes.py): one key per decision, whatever the
# card's kind; each card's buttons say what that decision does to it.
ACCEPT, QUARANTINE, REJECT, SKIP = "accept", "quarantine", "reject", "skip"
SKIP_CHOICE = Choice(
    SKIP, "skip", "X", help="leaves the queue; find it again under state 'skipped'"
)


@dataclass(frozen=True)
class Card:
    """A suggestion with what its card shows, loaded with the page."""

    s: Suggestion
    sizes: dict[str, int] = field(default_factory=dict)
    strips: dict[str, list[ImageInfo]] = field(default_factory=dict)
    image: ImageInfo | None = None  # the image at the suggestion's path, if it has one
    # More images the card shows, by the role its kind gives them (`CardKind.more_paths`).
    more: dict[str, ImageInfo | None] = field(default_factory=dict)


def card_key(card: Card) -> str:
    # Ids hold ':' (same:3:7); a key becomes a CSS class (st-key-...), so keep it plain.
    return re.sub(r"[^A-Za-z0-9_-]", "-", card.s.id)


class CardKind(ABC):
    """One kind's card: dashboard/cards/<kind>.py holds one as `CARD`."""

    kind: ClassVar[Kind]
    label: ClassVar[str]  # its name in the filters and on the card
    # What the toolbar's keys do to this card, in the toolbar's help (the Review page
    # lists every card's): A with file actions on, Q (None: refused), D.
    fixes: ClassVar[str]
    quarantines: ClassVar[str | None]
    rejects: ClassVar[str]

    def more_paths(self, con: duckdb.DuckDBPyConnection, s: Suggestion) -> dict[str, str | None]:
        """Paths of images the card shows beyond its folders' strips and its own image."""
        return {}

    @abstractmethod
    def title(self, s: Suggestion) -> str: ...

    @abstractmethod
    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]: ...

    @abstractmethod
    def render(self, settings: DashboardSettings, card: Card) -> None:
        """The card's body, under its kind and evidence."""

    @abstractmethod
    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        """What `accept` (fix it) and `quarantine` do: a guarded file action when file
        actions are on, a recorded decision otherwise."""

    def decide(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        """Always recorded through store.suggestions.decide."""
        if value == SKIP:
            return actions.record_suggestion(settings, card.s, Decision.SKIPPED)
        if value == REJECT:
            return actions.record_suggestion(settings, card.s, Decision.REJECTED)
        return self.accept(settings, card, value)

    def draw(self, settings: DashboardSettings, card: Card) -> None:
        st.markdown(f"**{self.label}** · {ui.md(card.s.evidence)}")
        self.render(settings, card)


def quarantine_choice(s: Suggestion, value: str, files_on: bool) -> Choice:
    return Choice(
        value,
        # Short labels: the card's button column is narrow; the help says the rest. A
        # button says "fix" only when it moves files: otherwise it confirms.
        "quarantine" if files_on else "confirm: quarantine",
        "Q",
        help=f"moves {s.path} to the quarantine folder (kept, not deleted)"
        if files_on
        else CONFIRM_HELP,
    )


# What a decision does with file actions off.
CONFIRM_HELP = (
    "records that the mistake is real and moves no file: it waits under state 'to fix' "
    "until it is fixed with file actions on"
)


def quarantine(settings: DashboardSettings, s: Suggestion) -> Done:
    """The image leaves the data set (kept in the quarantine folder)."""
    if settings.allow_file_actions:
        return actions.quarantine_image(settings, s)
    return actions.record_suggestion(settings, s, Decision.CONFIRMED, target=settings.quarantine)


def strip(
    settings: DashboardSettings, klass: str, card: Card, shown: int = ROW, columns: int = ROW
) -> None:
    size = card.sizes.get(klass, 0)
    st.markdown(
        f"**{ui.md(klass)}** · {size:,} image{'s' if size != 1 else ''} · "
        f"[image search ↗]({ui.search_url(klass)})"
    )
    images = card.strips.get(klass, [])[:shown]
    if not images:
        st.caption("no other image in this folder")
        return
    cols = st.columns(columns)
    for i, image in enumerate(images):
        with cols[i % columns]:
            ui.show_image(settings, image, THUMB, caption=image.name, face=True)


def the_image(settings: DashboardSettings, image: ImageInfo | None, path: str | None) -> None:
    if image is None:
        st.warning(ui.md(f"{path} is not in the store any more (moved since the last scan?)"))
        return
    st.markdown(f"**{ui.md(image.path)}**")
    face, photo = st.columns([FACE, PHOTO], vertical_alignment="top")
    with face:
        shown = ui.show_image(settings, image, FACE, caption="face", face=True)
    if shown:
        with photo:
            ui.show_image(settings, image, PHOTO, caption="photo")


def image_and_folders(settings: DashboardSettings, card: Card, proposed: str | None = None) -> None:
    """An image suggestion: the image beside its folder's strip (and the folder proposed
    for it)."""
    s = card.s
    image_col, strips_col = st.columns([2, 3])
    with image_col:
        the_image(settings, card.image, s.path)
    with strips_col:
        if s.class_a:
            st.caption("its folder now")
            strip(settings, s.class_a, card)
        if proposed:
            st.caption("the proposed folder: **move image** (A) moves it here")
            strip(settings, proposed, card)
