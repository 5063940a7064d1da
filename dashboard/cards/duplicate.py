"""A duplicate card: the copy beside the first copy (by path). Accepting (or quarantine)
takes the copy out of the data set; rejecting keeps both."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import streamlit as st

from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    REJECT,
    SKIP_CHOICE,
    Card,
    CardKind,
    quarantine,
    quarantine_choice,
    the_image,
)
from dashboard.queue import Choice
from dashboard.settings import DashboardSettings
from store.queries import review_cards
from store.suggestions import Suggestion
from store.vocab import Kind

FIRST_COPY = "first_copy"


class DuplicateCard(CardKind):
    kind = Kind.DUPLICATE
    label = "duplicate"

    def more_paths(self, con: duckdb.DuckDBPyConnection, s: Suggestion) -> dict[str, str | None]:
        """The first copy: the first other path with the same content."""
        if not s.hash:
            return {}
        return {
            FIRST_COPY: next((p for p in review_cards.copies(con, s.hash) if p != s.path), None)
        }

    def title(self, s: Suggestion) -> str:
        return f"{s.path}"

    def choices(self, card: Card, files_on: bool) -> Sequence[Choice]:
        keep = Choice(REJECT, "keep both", "D")
        return (quarantine_choice(card.s, ACCEPT, files_on), keep, SKIP_CHOICE)

    def render(self, settings: DashboardSettings, card: Card) -> None:
        s = card.s
        copy_col, first_col = st.columns(2)
        with copy_col:
            st.caption("the copy")
            the_image(settings, card.image, s.path)
        with first_col:
            st.caption("the first copy")
            first = card.more.get(FIRST_COPY)
            the_image(settings, first, first.path if first else f"{s.class_b}/…")

    def accept(self, settings: DashboardSettings, card: Card, value: str) -> Done:
        return quarantine(settings, card.s)


CARD = DuplicateCard()
