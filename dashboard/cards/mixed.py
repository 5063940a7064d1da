"""A mixed-folder card: a folder's foreign group beside the folder's own photos and the
folder whose person it matches. Accepting moves the group there — or into the folder
named on the card (a new one, for a group no folder holds) — as one undoable batch;
quarantine takes the group out of the data set; rejecting says they are all the
folder's own person."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import streamlit as st

from dashboard import actions, files, ui
from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    CONFIRM_HELP,
    QUARANTINE,
    REJECT,
    ROW,
    SKIP_CHOICE,
    THUMB,
    Card,
    CardKind,
    card_key,
    strip,
)
from dashboard.files import FileActionRefused
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.queries import review_cards
from store.queries.images import ImageInfo
from store.suggestions import Suggestion
from store.vocab import Decision, Kind, State

GROUP, OWN = "group", "own"
GROUP_SHOWN = 12  # the group's faces on the card (the decision moves all of them)


def _role(role: str, i: int) -> str:
    return f"{role}:{i:04d}"


def _images(card: Card, role: str) -> list[ImageInfo]:
    return [
        image
        for key, image in sorted(card.more.items())
        if key.startswith(role + ":") and image is not None
    ]


def _target_key(card: Card) -> str:
    return f"target-{card_key(card)}"


def target(card: Card) -> str:
    """Where accepting moves the group: the folder named on the card, else the matched
    one ("" when neither: a group no folder holds needs a name)."""
    typed = str(st.session_state.get(_target_key(card)) or "").strip()
    return typed or (card.s.class_b or "")


def move_group(
    settings: DashboardSettings, s: Suggestion, group: list[ImageInfo], target: str
) -> Done:
    """The foreign group goes to its person's folder (or a new one, made for it), as one
    undoable batch, like a merge."""
    target = files.folder_name(target, "destination folder")
    if target == s.class_a:
        raise FileActionRefused(f"the group is in {target} already: name another folder")
    moved = actions.move_into(settings, s, actions.stored_contents(group), target, new_folder=True)
    new = " (a new folder)" if moved.made else ""
    return Done(f"moved {len(moved.moves)} photos of {s.class_a} into {target}{new}", moved.first)


def quarantine_group(settings: DashboardSettings, s: Suggestion, group: list[ImageInfo]) -> Done:
    """The foreign group leaves the data set, as one undoable batch."""
    moved = actions.quarantine_files(settings, s, actions.stored_contents(group))
    return Done(f"removed {len(moved.moves)} photos of {s.class_a} from the data set", moved.first)


class MixedCard(CardKind):
    kind = Kind.MIXED
    label = "mixed folder"
    fixes = "move the group to the folder named on the card"
    quarantines = "the group"
    rejects = "all the folder's own person"

    def more_paths(self, con: duckdb.DuckDBPyConnection, s: Suggestion) -> dict[str, str | None]:
        """Every image of the group (the decision moves them all), and some of the
        folder's own."""
        group = review_cards.suggestion_group(con, s.id)
        shown: dict[str, str | None] = {_role(GROUP, i): p for i, p in enumerate(group)}
        if s.class_a:
            members = set(group)
            own = [p for p in review_cards.folder_paths(con, s.class_a, len(group) + ROW)]
            own = [p for p in own if p not in members][:ROW]
            shown.update({_role(OWN, i): p for i, p in enumerate(own)})
        return shown

    def title(self, s: Suggestion) -> str:
        return f"{s.class_a} → {s.class_b or 'a new folder'}"

    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]:
        s, n = card.s, len(_images(card, GROUP))
        where = s.class_b or "the folder named on the card"
        # With file actions off a button confirms the mistake, listed "to fix" until the
        # group is moved: it never says "move" when nothing will.
        move = Choice(
            ACCEPT,
            "move group" if files_on else "confirm: belongs elsewhere",
            "A",
            help=f"moves the {n} photos into {where} (one undo takes them all back)"
            if files_on
            else f"records that they belong in {where}; {CONFIRM_HELP}",
        )
        away = Choice(
            QUARANTINE,
            "quarantine group" if files_on else "confirm: quarantine group",
            "Q",
            help=f"moves the {n} photos to the quarantine folder (kept, not deleted)"
            if files_on
            else CONFIRM_HELP,
        )
        mine = Choice(REJECT, f"all {s.class_a}", "D", help=f"they are all {s.class_a}'s person")
        return (move, away, mine, SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        s = card.s
        group, own = _images(card, GROUP), _images(card, OWN)
        group_col, own_col, dest_col = st.columns(3)
        with group_col:
            st.caption(f"the group: {len(group)} photo{'s' if len(group) != 1 else ''}")
            self._faces(settings, group[:GROUP_SHOWN])
            if len(group) > GROUP_SHOWN:
                st.caption(f"… and {len(group) - GROUP_SHOWN} more")
        with own_col:
            size = card.sizes.get(s.class_a or "", 0)
            st.caption(f"{ui.md(s.class_a or '')}'s own ({size - len(group)} photos)")
            self._faces(settings, own)
        with dest_col:
            if s.class_b:
                st.caption("the folder whose person it matches")
                strip(settings, s.class_b, card, ROW, 3)
            else:
                st.caption("no folder holds this person")
        if settings.allow_file_actions and s.state in (State.OPEN, State.CONFIRMED):
            st.text_input(
                "move the group into (a new folder's name, or another folder)",
                value=s.class_b or "",
                key=_target_key(card),
                placeholder="name the new folder",
            )

    @staticmethod
    def _faces(settings: DashboardSettings, images: list[ImageInfo]) -> None:
        if not images:
            st.caption("none")
            return
        cols = st.columns(3)
        for i, image in enumerate(images):
            with cols[i % 3]:
                ui.show_image(settings, image, THUMB, caption=image.name, face=True)

    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        group = _images(card, GROUP)
        if value == QUARANTINE:
            if settings.allow_file_actions:
                return quarantine_group(settings, card.s, group)
            return actions.record_suggestion(
                settings, card.s, Decision.CONFIRMED, target=settings.quarantine
            )
        where = target(card)
        if not where:
            raise FileActionRefused(
                "no folder holds this group's person: name a new folder on the card first"
            )
        if settings.allow_file_actions:
            return move_group(settings, card.s, group, where)
        return actions.record_suggestion(settings, card.s, Decision.CONFIRMED, target=where)


CARD = MixedCard()
