"""A suggestion kind's card: dashboard/cards/<kind>.py, named after its `Kind` member
(store/vocab.py), holding `CARD`. A kind the vocabulary does not know, or one without a
card, raises `UnknownCard` naming it: no card draws another kind's suggestion."""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

from store.vocab import Kind

if TYPE_CHECKING:
    from dashboard.cards.base import CardKind


class UnknownCard(LookupError):
    """A suggestion kind with no card."""


@cache
def card_for(kind: str) -> CardKind:
    from dashboard.cards.base import CardKind  # the cards use actions, which use this

    try:
        member = Kind(kind)
    except ValueError:
        known = ", ".join(Kind)
        raise UnknownCard(f"unknown suggestion kind {kind!r}: one of {known}") from None
    name = f"{__package__}.{member.value}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise UnknownCard(
            f"suggestion kind {kind!r} has no card dashboard/cards/{member.value}.py"
        ) from None
    card = getattr(module, "CARD", None)
    if not isinstance(card, CardKind) or card.kind != member:
        raise UnknownCard(f"dashboard/cards/{member.value}.py holds no CARD for {kind!r}")
    return card


def labels() -> dict[str, str]:
    """Every kind's name in the filters, in `Kind`'s order."""
    return {k: card_for(k).label for k in Kind}
