"""The registry of suggestion kinds: every kind in the vocabulary has its daemon module and
its dashboard card, a kind without them fails loudly, naming it, and a kind is spelled
nowhere else: what the store and the dashboard's generic parts need of it they read off
its `Kind` member's `Rules` and its card."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from daemon.common.stats import calibration_tail, changed_past, folder_tail
from daemon.kinds import UnknownKind, kind_of, kinds
from daemon.kinds.base import FromSnapshot, FromStatistics
from dashboard.cards.registry import UnknownCard, card_for, labels
from store import actions as action_log
from store import suggestions
from store.connection import open_store
from store.suggestions import id_folders, with_folders
from store.vocab import Kind

REPO = Path(__file__).resolve().parents[1]
# Literals spelled like a kind that are not the kind: a folder name whose Unicode form is
# neither NFC nor NFD is said to be "mixed" (store/queries/person.unicode_form, for the
# same_person kind's evidence and the person page).
NOT_THE_KIND = {
    ("store/queries/person.py", "mixed"),
}


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


def _spellings(tree: ast.AST) -> Iterator[tuple[Kind, str]]:
    """Every `Kind.<MEMBER>`, every import of a kind's module, and every string literal
    that is a kind's value or starts an id (`<prefix>:`), with the spelling found. (A
    bare prefix is no kind's: "same" is also a pair decision.)"""
    members = {k.name: k for k in Kind}
    values = {k.value: k for k in Kind}
    heads = {k.rules.prefix: k for k in Kind} | values
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for name in [node.module.rsplit(".", 1)[-1], *(a.name for a in node.names)]:
                if name in values:
                    yield values[name], f"import of {node.module}: {name}"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "Kind"
            and node.attr in members
        ):
            yield members[node.attr], f"Kind.{node.attr}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            head = node.value.split(":", 1)[0]
            if node.value in values:
                yield values[node.value], node.value
            elif ":" in node.value and head in heads:
                yield heads[head], node.value


def test_a_kind_is_spelled_only_in_its_two_modules_and_the_vocabulary():
    """Adding a kind touches its `Kind` line, daemon/kinds/<kind>.py,
    dashboard/cards/<kind>.py and README: no other module of the three packages names
    one (the store, the registries, the dashboard's actions and pages stay generic)."""
    stray, seen = [], set()
    for package in ("daemon", "dashboard", "store"):
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for kind, spelled in _spellings(ast.parse(path.read_text(encoding="utf-8"))):
                own = {f"daemon/kinds/{kind}.py", f"dashboard/cards/{kind}.py", "store/vocab.py"}
                if rel in own:
                    continue
                if (rel, spelled) in NOT_THE_KIND:
                    seen.add((rel, spelled))
                    continue
                stray.append(f"{rel}: {spelled!r} ({kind.name})")
    assert stray == []
    assert seen == NOT_THE_KIND  # each exception is still needed


def test_readme_lists_every_kind():
    """The fourth place a kind is added: README's table of kinds and the `suggestions`
    view's `kind` column."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert [k for k in Kind if f"| `{k}` |" not in text] == []
    listed = re.search(r"`kind` \(([^)]*)\)", text)
    assert listed is not None and listed.group(1) == "/".join(f"`{k}`" for k in Kind)


def test_the_daemons_ids_name_the_folders_their_kinds_rules_say():
    """The ids the daemon's kinds spell and the `Rules` the store reads them by agree:
    the backup translates exactly the folder ids (a pair re-sorted), nothing else."""
    from daemon.kinds import mixed, same_person
    from daemon.kinds.base import image_id

    content = "0123456789" * 6 + "abcd"
    spelled = {
        Kind.SAME_PERSON: [(same_person.suggestion_id(7, 3), [3, 7])],
        Kind.MIXED: [
            (mixed.suggestion_id(3, 9, [content]), [3, 9]),
            (mixed.suggestion_id(3, None, [content]), [3]),
        ],
        **{k: [(image_id(k, content, 5), [5])] for k in (Kind.MISFILED, Kind.STRANGER)},
        Kind.DUPLICATE: [(image_id(Kind.DUPLICATE, content, 5), [5])],
    }
    assert set(spelled) == set(Kind)
    for kind, ids in spelled.items():
        for sid, folders in ids:
            assert sid.split(":", 1)[0] == kind.rules.prefix
            assert id_folders(sid) == folders, sid
            moved = {f: 100 - f for f in folders}
            again = with_folders(sid, moved)
            assert sorted(id_folders(again)) == sorted(moved.values()), again
            assert with_folders(again, {v: k for k, v in moved.items()}) == sid
    assert with_folders(same_person.suggestion_id(7, 3), {3: 10}) == "same:7:10"
    assert id_folders("unknown:1:2") == [] and with_folders("unknown:1:2", {1: 5}) == "unknown:1:2"


def test_a_decision_on_a_kind_the_vocabulary_does_not_know_writes_nothing(tmp_path):
    now = datetime(2026, 1, 1)
    with open_store(tmp_path / "s.duckdb", timeout=5) as con:
        con.execute(
            """INSERT INTO suggestion_rows (id, kind, rank_score, evidence, first_seen,
                   last_seen) VALUES ('odd:1:2', 'mixed_folder', 0.5, 'planted', ?, ?)""",
            [now, now],
        )
        with pytest.raises(ValueError, match="mixed_folder"):
            suggestions.decide(con, "odd:1:2", "accepted", "tester", now)
        assert con.execute("SELECT count(*) FROM suggestion_decisions").fetchone() == (0,)


def test_the_toolbars_help_is_each_cards_own_word():
    from dashboard.cards.registry import cards
    from dashboard.views.mistakes import choices

    accept, away, reject, _skip = (c.help or "" for c in choices(files_on=True))
    for card in cards():
        assert f"{card.label}: {card.fixes}" in accept
        assert card.rejects in reject
        if card.quarantines is None:
            assert card.label not in away
        else:
            assert f"{card.label}: {card.quarantines}" in away


def test_an_undo_removes_a_class_folder_it_leaves_with_no_file_and_touches_no_other(dev_copy):
    """The undo knows no kind: a class folder it leaves with no file goes (tests/test_mixed.py:
    the new folder a group went into; here one emptied since), and a folder that still
    holds a file is left exactly as it is, its empty subfolder too."""
    from dashboard import actions
    from dashboard.settings import parse_args
    from store.queries import pairs_page
    from store.queries.pairs_page import PairFilter

    root, db = dev_copy
    settings = parse_args(
        ["--db", str(db), "--root", str(root), "--user", "tester", "--allow-file-actions"]
    )
    with open_store(db, read_only=True, timeout=5) as con:
        (pair,) = pairs_page.pair_page(con, PairFilter(), 1)
    into = pair.b.klass
    (root / into / "empty").mkdir()
    done = actions.relabel(settings, pair, "a")
    assert done.action_id is not None
    actions.undo(settings, done.action_id)
    assert (root / into / "empty").is_dir() and (root / pair.b.path).is_file()

    done = actions.relabel(settings, pair, "a")
    assert done.action_id is not None
    with open_store(db, read_only=True, timeout=5) as con:
        act = action_log.get_action(con, done.action_id)
    assert act is not None and act.dst.startswith(f"{into}/")
    for other in (root / into).rglob("*"):  # every other file of the folder gone since
        if other.is_file() and other.relative_to(root).as_posix() != act.dst:
            other.unlink()
    actions.undo(settings, done.action_id)
    assert (root / pair.a.path).is_file() and not (root / into).exists()
