"""A suggestion kind's card: dashboard/cards/<kind>.py, named after its `Kind` member
(store/vocab.py), holding `CARD`. A kind the vocabulary does not know, or one without a
card, raises `UnknownCard` naming it: no card draws another kind's suggestion."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from daemon.common.kindmodules import kind_module
from store.vocab import Kind

if TYPE_CHECKING:
    from dashboard.cards.base import CardKind


class UnknownCard(LookupError):
    """A suggestion kind with no card."""


@cache
def card_for(kind: str) -> CardKind:
    from dashboard.cards.base import CardKind  # the cards use actions, which use this

    return kind_module(kind, __package__, "CARD", CardKind, UnknownCard)


def cards() -> list[CardKind]:
    """Every kind's card, in `Kind`'s order."""
    return [card_for(k) for k in Kind]


def labels() -> dict[str, str]:
    """Every kind's name in the filters, in `Kind`'s order."""
    return {card.kind: card.label for card in cards()}
