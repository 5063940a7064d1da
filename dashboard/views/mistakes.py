"""The review page, the dashboard's landing page: suggested mistakes, best first, one card
per suggestion (its kind's, dashboard/cards/<kind>.py), one decision per card from the
keyboard. The pairs page stays for the detail under a card."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import duckdb
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from dashboard import actions, db, ui
from dashboard.actions import Done
from dashboard.cards.base import (
    ACCEPT,
    CONFIRM_HELP,
    FACE,
    PHOTO,
    QUARANTINE,
    REJECT,
    ROW,
    SKIP,
    SKIP_CHOICE,
    STRIP,
    THUMB,
    Card,
    card_key,
)
from dashboard.cards.registry import card_for, cards, labels
from dashboard.queue import CardQueue, Choice, shortcuts_help
from dashboard.settings import DashboardSettings, current
from store import suggestions
from store.connection import StoreBusy, StoreMissing
from store.queries import images as image_rows
from store.queries import review_cards
from store.suggestions import CONFIDENCE_FLOOR
from store.vocab import State

STATE_LABELS = {
    State.OPEN: "open",
    State.CONFIRMED: "to fix (confirmed, not fixed)",
    State.ACCEPTED: "accepted (fixed)",
    State.REJECTED: "rejected",
    State.SKIPPED: "skipped",
    "all": "all",
}


def state_of(value: str, files_on: bool) -> State:
    """The suggestion state a CardQueue value leaves (what an undo expects to find)."""
    if value in (ACCEPT, QUARANTINE):
        return State.ACCEPTED if files_on else State.CONFIRMED
    return {REJECT: State.REJECTED, SKIP: State.SKIPPED}[value]


def choices(files_on: bool) -> tuple[Choice, ...]:
    """The toolbar: one key per decision, whatever the card's kind; each card's buttons say
    what that decision does to it, and the toolbar's help says it for every card
    (dashboard/cards/<kind>.py). A says "fix" only when files will move."""
    every = cards()
    accept = (
        Choice(
            ACCEPT,
            "fix it",
            "A",
            primary=True,
            help=" · ".join(f"{card.label}: {card.fixes}" for card in every),
        )
        if files_on
        else Choice(ACCEPT, "confirm", "A", primary=True, help=CONFIRM_HELP)
    )
    taken = " · ".join(f"{card.label}: {card.quarantines}" for card in every if card.quarantines)
    return (
        accept,
        Choice(
            QUARANTINE,
            "quarantine" if files_on else "confirm: quarantine",
            "Q",
            help=f"out of the data set, kept in the quarantine folder: {taken}"
            if files_on
            else CONFIRM_HELP,
        ),
        Choice(
            REJECT,
            "no mistake",
            "D",
            help=" · ".join(dict.fromkeys(card.rejects for card in every)),
        ),
        SKIP_CHOICE,
    )


FILE_ACTIONS_OFF = (
    "File actions are off: this page only records decisions (no file moves). A and Q "
    "*confirm* a mistake: it waits under state 'to fix' until it is fixed. Merging "
    "folders, moving or quarantining images needs `--allow-file-actions` (or "
    "`allow_file_actions = true` in facelint.toml)."
)

# -- loading -------------------------------------------------------------------------------


def _filters() -> tuple[str, tuple[str, ...], float]:
    st.session_state.setdefault("m_state", State.OPEN.value)
    st.session_state.setdefault("m_kinds", [])
    st.session_state.setdefault("m_confidence", CONFIDENCE_FLOOR)
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
            help="open: the review queue; to fix: mistakes confirmed while file actions "
            "were off, waiting for their fix; the others show decided ones, to clear a "
            "decision",
        )
        floor = st.slider(
            "confidence at least",
            min_value=0.0,
            max_value=1.0,
            step=0.01,
            format="%.2f",
            key="m_confidence",
            help=f"the store keeps no suggestion below {CONFIDENCE_FLOOR:.2f} (its floor, "
            "the default here); raise it to see only the likelier mistakes",
        )
    return str(state), tuple(kinds), float(floor)


def _offset(flt: tuple) -> int:
    """Where the page shown starts in the listing; a new filter starts at the top."""
    if st.session_state.get("m_filter") != flt:
        st.session_state["m_filter"] = flt
        st.session_state["m_offset"] = 0
    return int(st.session_state.get("m_offset", 0))


def _set_offset(offset: int) -> None:
    st.session_state["m_offset"] = max(0, offset)


def _still_listed(state: str) -> int:
    """Cards of the page shown that the listing still holds: a decided card leaves every
    listing but 'all'."""
    cards = st.session_state.get("q_mistakes_cards", [])
    if state == "all":
        return len(cards)
    return len(cards) - len(st.session_state.get("q_mistakes_decided", {}))


def read_cards(
    con: duckdb.DuckDBPyConnection,
    state: str,
    kinds: Sequence[str],
    size: int,
    offset: int,
    min_confidence: float = 0.0,
) -> tuple[list[Card], int]:
    """One page of cards with every image they show, in one read."""
    rows = suggestions.queue(con, state, kinds, size, offset, min_confidence)
    total = suggestions.count(con, state, kinds, min_confidence)
    folders = sorted({n for s in rows for n in (s.class_a, s.class_b) if n})
    sizes = review_cards.folder_sizes(con, folders)
    # One more than shown: the card's own image is left out of its folder's strip.
    strip_paths = {k: review_cards.folder_paths(con, k, STRIP + 1) for k in folders}
    # Images a card shows beyond its folders' (`CardKind.more_paths`), by their role.
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
    state, kinds, floor = _filters()
    size = settings.page_size
    files_on = settings.allow_file_actions
    flt = (state, kinds, floor)
    if not files_on:
        st.caption(FILE_ACTIONS_OFF)
    elif state == State.OPEN:
        _to_fix_note(settings, kinds)

    def context() -> tuple:
        return (*flt, _offset(flt))

    def meta() -> dict:
        return st.session_state.get("mistakes_meta", {})

    def preloaded(offset: int) -> tuple[list[Card], int] | None:
        """The page preloaded for this offset: J (or "next page") turned to where it
        starts, or every card of the page it follows was decided (they left the listing,
        so the page after them now starts where theirs did). Not after a reload for
        another reason (a decision cleared, an undo from an earlier page)."""
        ready = _PRELOADED.pop(_session(), None)
        if ready is None or ready["flt"] != flt or ready["size"] != size:
            return None
        if ready["got"] is None:
            return None  # still loading: the page loads as usual
        moved_up = state != "all" and offset == ready["base"]
        if offset != ready["start"] and not (
            moved_up and not st.session_state.get("q_mistakes_stale")
        ):
            return None
        cards, total = ready["got"]
        if state != "all":
            # Decided since it was counted: out of the listing.
            total -= len(st.session_state.get("q_mistakes_decided", {})) - ready["decided"]
        return cards, total

    def load() -> list[Card] | None:
        offset = _offset(flt)
        ready = preloaded(offset)
        if ready is not None:
            cards, total = ready
        else:
            got = ui.query(
                settings,
                lambda con: read_cards(con, state, kinds, size, offset, floor),
                keep="mistakes",
            )
            if got is None:
                return None
            cards, total = got
        st.session_state["mistakes_meta"] = {"total": total}
        return cards

    def preload(page: Sequence[Card]) -> None:
        """The next page's cards and their images, while the reader looks at this one:
        J past the last card, or the last decision of a page, then draws at once."""
        total = int(meta().get("total", 0))
        base = _offset(flt)
        start = base + _still_listed(state)
        if not page or base + len(page) >= total:
            return
        ready = _PRELOADED.get(_session())
        shown = tuple(card_key(c) for c in page)
        if ready is not None and (ready["flt"], ready["size"], ready["base"], ready["page"]) == (
            flt,
            size,
            base,
            shown,
        ):
            # Loaded after this very page: a decision on it since moved the next page up
            # in the listing by one, and changed nothing in it. No second read.
            ready["start"] = start
            return
        ready = {
            "flt": flt,
            "size": size,
            "base": base,
            "start": start,
            "page": shown,
            "got": None,
            "decided": len(st.session_state.get("q_mistakes_decided", {})),
        }
        _PRELOADED[_session()] = ready
        # In a thread of its own: the run ends at once, so the reader's next key is not
        # kept waiting on a read and a page of image renders (seconds under load).
        threading.Thread(
            target=_preload_page,
            args=(ready, settings, (state, kinds, size, start, floor)),
            daemon=True,
        ).start()

    def summary(card: Card) -> str:
        s = card.s
        by = f" by {ui.md(s.decided_by)}" if s.decided_by else ""
        decided = f"  \n**{ui.md(STATE_LABELS.get(s.state, s.state))}**{by}"
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
        expected = state_of(value, files_on)
        return actions.clear_suggestion(settings, card.s, only_if=expected).message

    def header(page: Sequence[Card]) -> None:
        ui.show_flash(lambda action_id: _reloading(actions.undo, settings, action_id))
        first = _offset(flt)
        total = int(meta().get("total", 0))
        if state != "all":
            # Decided since this page was loaded: out of the listing.
            total -= len(st.session_state.get("q_mistakes_decided", {}))
        what = (
            STATE_LABELS[state]
            + " suggestions"
            + (f" ({', '.join(card_for(k).label for k in kinds)})" if kinds else "")
            + (f" with confidence ≥ {floor:.2f}" if floor > CONFIDENCE_FLOOR else "")
        )
        if page:
            st.caption(
                f"{max(total, 0):,} {what} · showing {first + 1:,}–{first + len(page):,}, "
                "most likely mistake first"
            )
        else:
            st.write(f"No {what}.")

    def turn(step: int) -> bool:
        """Another page, from the keyboard or the footer's buttons; whether there was one.
        The next starts after this page's cards still listed (decided ones left it)."""
        offset = _offset(flt)
        if step > 0:
            shown = len(st.session_state.get("q_mistakes_cards", []))
            if offset + shown >= int(meta().get("total", 0)):
                return False
            _set_offset(offset + _still_listed(state))
            return True
        if offset <= 0:
            return False
        _set_offset(offset - size)
        return True

    def footer(page: Sequence[Card]) -> None:
        offset = _offset(flt)
        total = int(meta().get("total", 0))
        page_no = offset // size + 1
        pages = max(page_no, -(-total // size))
        prev_col, where, next_col = st.columns([2, 3, 2], vertical_alignment="center")
        prev_col.button(
            "← previous page",
            key="mistakes-prev",
            disabled=offset <= 0,
            on_click=turn,
            args=(-1,),
        )
        where.caption(f"page {page_no:,} of {pages:,}")
        next_col.button(
            "next page →",
            key="mistakes-next",
            disabled=offset + len(page) >= total,
            on_click=turn,
            args=(1,),
        )

    queue: CardQueue[Card] = CardQueue(
        name="mistakes",
        choices=choices(files_on),
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
        card_choices=lambda card: card_for(card.s.kind).choices(card, files_on),
        empty=lambda: _live_empty(settings, state, kinds),
        next_page=lambda: turn(1),
        previous_page=lambda: turn(-1),
        preload=preload,
    )
    st.caption(shortcuts_help(queue))
    queue.render()


# The next page of cards, loaded beside the page shown, per browser session: a worker
# thread fills it (it cannot write Session State) and the page takes it when it turns.
_PRELOADED: dict[str, dict] = {}


def _session() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _preload_page(ready: dict, settings: DashboardSettings, query: tuple) -> None:
    state, kinds, size, start, floor = query
    try:
        got = db.read(settings, lambda con: read_cards(con, state, kinds, size, start, floor))
    except (StoreBusy, StoreMissing, duckdb.Error):
        return  # only a head start: the page loads as usual when it is shown
    ready["got"] = got
    # At the sizes the cards draw them (dashboard/cards/base.py).
    for card in got[0]:
        for image in [card.image, *card.more.values()]:
            if image is not None:
                ui.warm_image(settings, image, FACE, face=True)
                ui.warm_image(settings, image, PHOTO, face=False)
        for strip in card.strips.values():
            for image in strip[:ROW]:
                ui.warm_image(settings, image, THUMB, face=True)


def _to_fix_note(settings: DashboardSettings, kinds: tuple[str, ...]) -> None:
    """Mistakes confirmed while file actions were off wait for their fix: say so."""
    waiting = ui.query(settings, lambda con: suggestions.count(con, State.CONFIRMED, kinds))
    if waiting:
        st.info(
            f"{waiting:,} confirmed mistake{'s' if waiting != 1 else ''} "
            f"{'wait' if waiting != 1 else 'waits'} to be fixed (recorded while file actions "
            "were off): choose state 'to fix' to fix them now."
        )


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
