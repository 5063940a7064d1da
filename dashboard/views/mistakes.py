"""The review page, the dashboard's landing page: suggested mistakes, best first, one card
per suggestion (a split person, a misfiled image, a stranger, a duplicate, a mixed
folder), one decision per card from the keyboard. The pairs page stays for the detail
under a card."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb
import streamlit as st

from dashboard import actions, ui
from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    QUARANTINE,
    REJECT,
    SKIP,
    SKIP_CHOICE,
    STRIP,
    Card,
    card_key,
)
from dashboard.cards.registry import card_for, labels
from dashboard.queue import CardQueue, Choice, shortcuts_help
from dashboard.settings import DashboardSettings, current
from store import suggestions
from store.queries import images as image_rows
from store.queries import review_cards
from store.vocab import State

STATE_LABELS = {
    State.OPEN: "open",
    State.ACCEPTED: "accepted",
    State.REJECTED: "rejected",
    State.SKIPPED: "skipped",
    "all": "all",
}
# A CardQueue value -> the suggestion state it leaves (what an undo expects to find).
STATE_OF = {
    ACCEPT: State.ACCEPTED,
    QUARANTINE: State.ACCEPTED,
    REJECT: State.REJECTED,
    SKIP: State.SKIPPED,
}

# The toolbar: one key per decision, whatever the card's kind; each card's buttons say
# what that decision does to it (dashboard/cards/<kind>.py).
CHOICES = (
    Choice(
        ACCEPT,
        "fix it",
        "A",
        primary=True,
        help="same person: merge the folders · misfiled: move the image to the proposed "
        "folder · stranger, duplicate: quarantine the image · mixed folder: move the group",
    ),
    Choice(QUARANTINE, "quarantine", "Q", help="take the image (a mixed folder: the group) out"),
    Choice(
        REJECT,
        "no mistake",
        "D",
        help="different people · filed right · keep both copies · all the folder's person",
    ),
    SKIP_CHOICE,
)

FILE_ACTIONS_OFF = (
    "File actions are off: this page only records decisions (no file moves). Merging "
    "folders, moving or quarantining images needs `--allow-file-actions` (or "
    "`allow_file_actions = true` in facelint.toml)."
)

# -- loading -------------------------------------------------------------------------------


def _filters() -> tuple[str, tuple[str, ...]]:
    st.session_state.setdefault("m_state", State.OPEN.value)
    st.session_state.setdefault("m_kinds", [])
    kind_labels = labels()
    with st.sidebar:
        st.subheader("Filters")
        kinds = st.multiselect(
            "kind",
            list(kind_labels),
            format_func=kind_labels.__getitem__,
            key="m_kinds",
            help="none chosen: every kind",
        )
        state = st.selectbox(
            "state",
            list(STATE_LABELS),
            format_func=STATE_LABELS.__getitem__,
            key="m_state",
            help="open: the review queue; the others show decided ones, to clear a decision",
        )
    return str(state), tuple(kinds)


def _page(flt: tuple) -> int:
    """The page shown; a new filter starts at page 1."""
    if st.session_state.get("m_filter") != flt:
        st.session_state["m_filter"] = flt
        st.session_state["m_page"] = 1
    return int(st.session_state["m_page"])


def _set_page(page: int) -> None:
    st.session_state["m_page"] = max(1, page)


def read_cards(
    con: duckdb.DuckDBPyConnection, state: str, kinds: Sequence[str], size: int, offset: int
) -> tuple[list[Card], int]:
    """One page of cards with every image they show, in one read."""
    rows = suggestions.queue(con, state, kinds, size, offset)
    total = suggestions.count(con, state, kinds)
    folders = sorted({n for s in rows for n in (s.class_a, s.class_b) if n})
    sizes = review_cards.folder_sizes(con, folders)
    # One more than shown: the card's own image is left out of its folder's strip.
    strip_paths = {k: review_cards.folder_paths(con, k, STRIP + 1) for k in folders}
    # Images a card shows beyond its folders' (a duplicate's first copy), by their role.
    more = {s.id: card_for(s.kind).more_paths(con, s) for s in rows}
    wanted = [p for ps in strip_paths.values() for p in ps]
    wanted += [s.path for s in rows if s.path]
    wanted += [p for roles in more.values() for p in roles.values() if p]
    info = image_rows.images_by_path(con, wanted)
    cards = []
    for s in rows:
        strips = {
            k: [info[p] for p in strip_paths[k] if p in info and p != s.path][:STRIP]
            for k in (s.class_a, s.class_b)
            if k
        }
        shown = {role: info.get(p or "") for role, p in more[s.id].items()}
        cards.append(Card(s, sizes, strips, info.get(s.path or ""), shown))
    return cards, total


# -- drawing -------------------------------------------------------------------------------


def _reloading(fn: Callable[..., Done], *args: object) -> None:
    """A button that changes the queue behind its back (a cleared decision)."""
    ui.act(fn, *args)
    st.session_state["q_mistakes_stale"] = True


def render(settings: DashboardSettings) -> None:
    st.header("Review")
    state, kinds = _filters()
    size = settings.page_size
    if not settings.allow_file_actions:
        st.caption(FILE_ACTIONS_OFF)

    def context() -> tuple:
        return (state, kinds, _page((state, kinds)))

    def meta() -> dict:
        return st.session_state.get("mistakes_meta", {})

    def load() -> list[Card] | None:
        offset = (_page((state, kinds)) - 1) * size
        got = ui.query(
            settings, lambda con: read_cards(con, state, kinds, size, offset), keep="mistakes"
        )
        if got is None:
            return None
        cards, total = got
        st.session_state["mistakes_meta"] = {"total": total}
        return cards

    def summary(card: Card) -> str:
        s = card.s
        by = f" by {ui.md(s.decided_by)}" if s.decided_by else ""
        decided = f"  \n**{ui.md(s.state)}**{by}"
        return f"confidence **{s.rank_score:.2f}**" + (decided if s.state != State.OPEN else "")

    def title(card: Card) -> str:
        return card_for(card.s.kind).title(card.s)

    def draw(card: Card, focused: bool) -> None:
        card_for(card.s.kind).draw(settings, card)
        if card.s.state != State.OPEN:
            st.button(
                "clear decision",
                key=f"clear-{card_key(card)}",
                help="open again; a decision that moved files moves them back",
                on_click=_reloading,
                args=(actions.clear_suggestion, settings, card.s),
            )

    def undo(card: Card, value: str) -> str:
        return actions.clear_suggestion(settings, card.s, only_if=STATE_OF[value]).message

    def header(page: Sequence[Card]) -> None:
        ui.show_flash(lambda action_id: _reloading(actions.undo, settings, action_id))
        first = (_page((state, kinds)) - 1) * size
        total = int(meta().get("total", 0))
        if state == State.OPEN:
            # Decided since this page was loaded: out of the queue.
            total -= len(st.session_state.get("q_mistakes_decided", {}))
        what = (
            STATE_LABELS[state]
            + " suggestions"
            + (f" ({', '.join(card_for(k).label for k in kinds)})" if kinds else "")
        )
        if page:
            st.caption(
                f"{max(total, 0):,} {what} · showing {first + 1:,}–{first + len(page):,}, "
                "most likely mistake first"
            )
        else:
            st.write(f"No {what}.")

    def footer(page: Sequence[Card]) -> None:
        page_no = _page((state, kinds))
        pages = max(1, -(-int(meta().get("total", 0)) // size))
        prev_col, where, next_col = st.columns([2, 3, 2], vertical_alignment="center")
        prev_col.button(
            "← previous page",
            key="mistakes-prev",
            disabled=page_no == 1,
            on_click=_set_page,
            args=(page_no - 1,),
        )
        where.caption(f"page {page_no:,} of {pages:,}")
        next_col.button(
            "next page →",
            key="mistakes-next",
            disabled=page_no >= pages,
            on_click=_set_page,
            args=(page_no + 1,),
        )

    queue: CardQueue[Card] = CardQueue(
        name="mistakes",
        choices=CHOICES,
        load=load,
        context=context,
        key=card_key,
        render_card=draw,
        decide=lambda card, value: card_for(card.s.kind).decide(settings, card, value).message,
        undo=undo,
        header=header,
        footer=footer,
        summary=summary,
        title=title,
        card_choices=lambda card: card_for(card.s.kind).choices(card, settings.allow_file_actions),
        empty=lambda: _live_empty(settings, state, kinds),
    )
    st.caption(shortcuts_help(queue))
    queue.render()


def _live_empty(settings: DashboardSettings, state: str, kinds: tuple[str, ...]) -> None:
    """An empty queue says what the daemon is doing, and looks again by itself."""
    if state != State.OPEN:
        return
    from dashboard.views.status import live_line

    @st.fragment(run_every=5)
    def live() -> None:
        line = live_line(settings)
        st.info(
            (ui.md(f"{line}. ") if line else "")
            + "Nothing to review: new suggestions appear here as the daemon finds them."
        )
        found = ui.query(settings, lambda con: suggestions.count(con, State.OPEN, kinds))
        if found:
            st.session_state["q_mistakes_stale"] = True
            st.rerun()

    live()


if __name__ == "__main__":
    render(current())
