"""A misfiled card: the image beside its folder and the proposed one. Accepting moves it
into the proposed folder; quarantine takes it out of the data set; rejecting says it is
filed right."""

from __future__ import annotations

from collections.abc import Sequence

from dashboard import actions, files
from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    CONFIRM_HELP,
    QUARANTINE,
    REJECT,
    SKIP_CHOICE,
    Card,
    CardKind,
    image_and_folders,
    quarantine,
    quarantine_choice,
)
from dashboard.files import FileActionRefused
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.suggestions import Suggestion
from store.vocab import Decision, Kind


def move_image(settings: DashboardSettings, s: Suggestion) -> Done:
    """The image goes to the proposed folder."""
    if s.path is None or s.class_b is None:
        raise FileActionRefused(f"{s.id}: no image, or no proposed folder for it")
    path, target = s.path, files.folder_name(s.class_b, "proposed folder")
    moved = actions.move_into(settings, s, [(path, actions.image_of(s))], target)
    return Done(f"moved {moved.moves[0].src} → {moved.moves[0].dst}", moved.first)


class MisfiledCard(CardKind):
    kind = Kind.MISFILED
    label = "misfiled image"
    fixes = "move the image to the proposed folder"
    quarantines = "the image"
    rejects = "filed right"

    def title(self, s: Suggestion) -> str:
        return f"{s.path}"

    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]:
        s = card.s
        move = Choice(
            ACCEPT,
            "move image" if files_on else "confirm: misfiled",
            "A",
            help=f"moves {s.path} into {s.class_b}/"
            if files_on
            else f"records that it belongs in {s.class_b}; {CONFIRM_HELP}",
        )
        keep = Choice(REJECT, "filed right", "D")
        return (move, quarantine_choice(s, QUARANTINE, files_on), keep, SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        image_and_folders(settings, card, proposed=card.s.class_b)

    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        s = card.s
        if value != ACCEPT:
            return quarantine(settings, s)
        if settings.allow_file_actions:
            return move_image(settings, s)
        return actions.record_suggestion(settings, s, Decision.CONFIRMED, target=s.class_b)


CARD = MisfiledCard()
