"""A stranger card: the image beside its folder. Accepting (or quarantine) takes it out of
the data set; rejecting says it is filed right."""

from __future__ import annotations

from collections.abc import Sequence

from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    REJECT,
    SKIP_CHOICE,
    Card,
    CardKind,
    image_and_folders,
    quarantine,
    quarantine_choice,
)
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.suggestions import Suggestion
from store.vocab import Kind


class StrangerCard(CardKind):
    kind = Kind.STRANGER
    label = "stranger in its folder"
    fixes = "quarantine the image"
    quarantines = "the image"
    rejects = "filed right"

    def title(self, s: Suggestion) -> str:
        return f"{s.path}"

    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]:
        keep = Choice(REJECT, "filed right", "D")
        return (quarantine_choice(card.s, ACCEPT, files_on), keep, SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        image_and_folders(settings, card)

    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        return quarantine(settings, card.s)


CARD = StrangerCard()
