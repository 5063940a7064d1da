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
    CONFIRM_HELP,
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
from store.queries.person import nfc, unicode_form
from store.suggestions import Suggestion
from store.vocab import Decision, Kind, State


def _keep_key(card: Card) -> str:
    return f"keep-{card_key(card)}"


def one_name(card: Card) -> str | None:
    """The name a merge must keep when the two are one name in two Unicode forms: the
    NFC form (what a keyboard types); None when the names differ, or neither is NFC."""
    a, b = card.s.class_a, card.s.class_b
    if not a or not b or nfc(a) != nfc(b):
        return None
    return next((n for n in (a, b) if unicode_form(n) == "NFC"), None)


def surviving(card: Card) -> str:
    """The name a merge keeps: the NFC one of one name in two forms; else the reviewer's
    choice, else the larger folder's."""
    s = card.s
    nfc = one_name(card)
    if nfc is not None:
        return nfc
    chosen = st.session_state.get(_keep_key(card))
    if chosen in (s.class_a, s.class_b):
        return str(chosen)
    a, b = card.sizes.get(s.class_a or "", 0), card.sizes.get(s.class_b or "", 0)
    return str(s.class_a if a >= b else s.class_b)


def merge(settings: DashboardSettings, s: Suggestion, keep: str) -> Done:
    """Every file of the other folder moves into `keep`, as one undoable group; the
    emptied folder goes away."""
    if keep not in (s.class_a, s.class_b):
        raise FileActionRefused(f"{s.id}: {keep!r} is not one of this suggestion's folders")
    gone = s.class_b if keep == s.class_a else s.class_a
    assert gone is not None
    return actions.merge_folders(settings, s, gone, keep)


class SamePersonCard(CardKind):
    kind = Kind.SAME_PERSON
    label = "same person, two folders"
    fixes = "merge the folders"
    quarantines = None
    rejects = "different people"

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
            else Choice(ACCEPT, "confirm: same person", "A", help=CONFIRM_HELP)
        )
        return (merge, Choice(REJECT, "different people", "D"), SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        s = card.s
        left, right = st.columns(2)
        for col, klass in ((left, s.class_a), (right, s.class_b)):
            if klass:
                with col:
                    strip(settings, klass, card, STRIP, STRIP_COLUMNS)
        fixable = s.state in (State.OPEN, State.CONFIRMED)
        if settings.allow_file_actions and fixable and one_name(card) is not None:
            # One name, two forms: two identical-looking choices would be no choice.
            st.caption(
                ui.md(f"surviving name: {surviving(card)} (the NFC form, as keyboards type it)")
            )
        elif settings.allow_file_actions and fixable and s.class_a and s.class_b:
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
            return merge(settings, card.s, keep)
        return actions.record_suggestion(settings, card.s, Decision.CONFIRMED, target=keep)


CARD = SamePersonCard()
