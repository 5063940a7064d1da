"""The registry of suggestion kinds: every kind in the vocabulary has its daemon module and
its dashboard card, and a kind without them fails loudly, naming it."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.common.stats import calibration_tail, changed_past, folder_tail
from daemon.kinds import UnknownKind, kind_of, kinds
from daemon.kinds.base import FromSnapshot, FromStatistics
from dashboard.cards.registry import UnknownCard, card_for, labels
from store.vocab import Kind


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_a_daemon_module_and_a_dashboard_card(kind):
    found = kind_of(kind)
    assert found.kind is kind
    assert isinstance(found, FromStatistics | FromSnapshot)
    card = card_for(kind.value)  # as the store returns it: a plain string
    assert card.kind is kind
    assert labels()[kind] == card.label != ""


def test_the_kinds_run_in_the_vocabularys_order():
    # An image named by two kinds at the same confidence gets the earlier kind's
    # suggestion (each draw has its own seeded stream, so the order fixes no draws).
    assert [k.kind for k in kinds()] == list(Kind)


@pytest.mark.parametrize("lookup, error", [(kind_of, UnknownKind), (card_for, UnknownCard)])
def test_an_unknown_kind_raises_naming_it(lookup, error):
    with pytest.raises(error, match="mixed_folder"):
        lookup("mixed_folder")


def test_a_kind_without_its_module_raises_naming_the_module(monkeypatch):
    import importlib

    real = importlib.import_module

    def without_stranger(name, *args):
        if name.endswith(".stranger"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *args)

    kind_of.cache_clear()
    card_for.cache_clear()
    monkeypatch.setattr(importlib, "import_module", without_stranger)
    try:
        with pytest.raises(UnknownKind, match=r"daemon/kinds/stranger\.py"):
            kind_of(Kind.STRANGER)
        with pytest.raises(UnknownCard, match=r"dashboard/cards/stranger\.py"):
            card_for(Kind.STRANGER)
    finally:
        monkeypatch.undo()
        kind_of.cache_clear()
        card_for.cache_clear()


def test_both_tail_fits_recover_a_normal():
    x = np.random.default_rng(0).normal(0.2, 0.1, 200_000)
    for tail in (calibration_tail(x), folder_tail(x, 1e6)):
        assert tail.loc == pytest.approx(0.2, abs=0.01)
        assert tail.scale == pytest.approx(0.1, rel=0.05)


def test_an_estimate_is_due_again_past_one_percent():
    assert not changed_past(1010, 1000) and changed_past(1011, 1000)
    assert not changed_past(990, 1000) and changed_past(989, 1000)
    # Never for one face more or less, however small the set.
    assert not changed_past(11, 10) and changed_past(12, 10)
