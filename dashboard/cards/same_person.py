"""A same-person card: two folders' strips side by side. Accepting merges the folders into
the surviving name (the reviewer's choice, else the larger folder's); rejecting says they
are different people."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from dashboard import actions, ui
from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    QUARANTINE,
    REJECT,
    SKIP_CHOICE,
    STRIP,
    STRIP_COLUMNS,
    Card,
    CardKind,
    card_key,
    strip,
)
from dashboard.files import FileActionRefused
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.suggestions import Suggestion
from store.vocab import Decision, Kind, State


def _keep_key(card: Card) -> str:
    return f"keep-{card_key(card)}"


def surviving(card: Card) -> str:
    """The name a merge keeps: the reviewer's choice, else the larger folder's."""
    s = card.s
    chosen = st.session_state.get(_keep_key(card))
    if chosen in (s.class_a, s.class_b):
        return str(chosen)
    a, b = card.sizes.get(s.class_a or "", 0), card.sizes.get(s.class_b or "", 0)
    return str(s.class_a if a >= b else s.class_b)


class SamePersonCard(CardKind):
    kind = Kind.SAME_PERSON
    label = "same person, two folders"

    def title(self, s: Suggestion) -> str:
        return f"{s.class_a} / {s.class_b}"

    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]:
        merge = (
            Choice(
                ACCEPT,
                "merge folders",
                "A",
                help="moves every file of the other "
                "folder into the surviving one (one undo takes it all back)",
            )
            if files_on
            else Choice(ACCEPT, "same person", "A", help="records the decision, moves no file")
        )
        return (merge, Choice(REJECT, "different people", "D"), SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        s = card.s
        left, right = st.columns(2)
        for col, klass in ((left, s.class_a), (right, s.class_b)):
            if klass:
                with col:
                    strip(settings, klass, card, STRIP, STRIP_COLUMNS)
        if settings.allow_file_actions and s.state == State.OPEN and s.class_a and s.class_b:
            names = [s.class_a, s.class_b]
            st.radio(
                "surviving name (the other folder's files move into it)",
                names,
                index=names.index(surviving(card)),
                format_func=ui.md,  # radio options render markdown
                key=_keep_key(card),
                horizontal=True,
            )

    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        if value == QUARANTINE:
            raise FileActionRefused(
                "a same-person suggestion has no one image to quarantine: merge (A), "
                "different people (D) or skip (X)"
            )
        keep = surviving(card)
        if settings.allow_file_actions:
            return actions.merge(settings, card.s, keep)
        return actions.record_suggestion(settings, card.s, Decision.ACCEPTED, target=keep)


CARD = SamePersonCard()
