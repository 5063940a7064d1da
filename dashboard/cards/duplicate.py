"""A duplicate card: the stray copy beside the original (the copy in the folder whose
person it is, daemon/kinds/duplicate.py), each with "keep this one". Accepting (or
quarantine) takes the stray copy out of the data set; "keep this one" under the stray copy
takes the original out instead (the faces can be wrong); rejecting keeps both."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import streamlit as st

from dashboard import actions, ui
from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    REJECT,
    SKIP_CHOICE,
    Card,
    CardKind,
    card_key,
    quarantine,
    quarantine_choice,
    the_image,
)
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.queries import review_cards
from store.suggestions import Suggestion
from store.vocab import Decision, Kind, State

ORIGINAL = "original"
# The queue's state in Session State (dashboard/queue.py, the Review page's queue "mistakes"):
# a decision made by a button in the card's body loads the page again.
STALE = "q_mistakes_stale"


def keep_copy(settings: DashboardSettings, s: Suggestion, original: str) -> Done:
    """The reviewer keeps the copy the faces called stray: the original leaves (with file
    actions off: recorded, nothing moves)."""
    if settings.allow_file_actions:
        return actions.quarantine_image(settings, s, path=original)
    return actions.record_suggestion(
        settings, s, Decision.CONFIRMED, target=f"{settings.quarantine} (keeps {s.path})"
    )


class DuplicateCard(CardKind):
    kind = Kind.DUPLICATE
    label = "duplicate"
    fixes = "quarantine the stray copy"
    quarantines = "the stray copy"
    rejects = "keep both copies"

    def more_paths(self, con: duckdb.DuckDBPyConnection, s: Suggestion) -> dict[str, str | None]:
        """The original: the copy stored first in the folder the daemon kept it in."""
        if not s.hash:
            return {}
        found = [(p, k) for p, k in review_cards.copies(con, s.hash) if p != s.path]
        home = next((p for p, k in found if k == s.class_b), None)
        return {ORIGINAL: home or next((p for p, _ in found), None)}

    def title(self, s: Suggestion) -> str:
        return f"{s.path}"

    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]:
        keep = Choice(REJECT, "keep both", "D")
        return (quarantine_choice(card.s, ACCEPT, files_on), keep, SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        s = card.s
        original = card.more.get(ORIGINAL)
        copy_col, original_col = st.columns(2)
        open_ = s.state in (State.OPEN, State.CONFIRMED)
        with copy_col:
            st.caption(ui.md(f"the copy in {s.class_a} (the stray one)"))
            the_image(settings, card.image, s.path)
            if open_ and original is not None:
                st.button(
                    "keep this one",
                    key=f"keep-copy-{card_key(card)}",
                    help=f"takes the original {original.path} out of the data set instead",
                    on_click=_reloading,
                    args=(keep_copy, settings, s, original.path),
                )
        with original_col:
            st.caption(ui.md(f"the original in {s.class_b}"))
            the_image(settings, original, original.path if original else f"{s.class_b}/…")
            if open_:
                st.button(
                    "keep this one",
                    key=f"keep-original-{card_key(card)}",
                    help=f"takes the copy {s.path} out of the data set (as A does)",
                    on_click=_reloading,
                    args=(quarantine, settings, s),
                )

    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        return quarantine(settings, card.s)


def _reloading(fn, *args: object) -> None:  # type: ignore[no-untyped-def]
    ui.act(fn, *args)
    st.session_state[STALE] = True


CARD = DuplicateCard()
