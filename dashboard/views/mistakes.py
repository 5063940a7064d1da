"""The review page, the dashboard's landing page: suggested mistakes, best first, one card
per suggestion (a split person, a misfiled image, a stranger, a duplicate), one decision
per card from the keyboard. The pairs page stays for the detail under a card."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb
import streamlit as st

from dashboard import actions, ui
from dashboard.actions import Done
from dashboard.files import FileActionRefused
from dashboard.queue import CardQueue, Choice, shortcuts_help
from dashboard.settings import DashboardSettings, current
from store import suggestions
from store.queries import images as image_rows
from store.queries import mistakes as mistake_cards
from store.queries.images import ImageInfo
from store.suggestions import Suggestion

KIND_LABELS = {
    "same_person": "same person, two folders",
    "misfiled": "misfiled image",
    "stranger": "stranger in its folder",
    "duplicate": "duplicate",
}
STATE_LABELS = {
    "open": "open",
    "accepted": "accepted",
    "rejected": "rejected",
    "skipped": "skipped",
    "all": "all",
}
# A CardQueue value -> the suggestion state it leaves (what an undo expects to find).
STATE_OF = {"accept": "accepted", "quarantine": "accepted", "reject": "rejected", "skip": "skipped"}

THUMB = 96  # a face in a folder's strip
FACE = 170  # the image a card is about
PHOTO = 100  # ... and its whole photo beside it
STRIP = 8  # faces shown per folder of a same-person card (two rows in half a card)
STRIP_COLUMNS = 4
ROW = 6  # faces in a folder's strip beside an image: one row

# The toolbar: one key per decision, whatever the card's kind; each card's buttons say
# what that decision does to it.
CHOICES = (
    Choice(
        "accept",
        "fix it",
        "A",
        primary=True,
        help="same person: merge the folders · misfiled: move the image to the proposed "
        "folder · stranger, duplicate: quarantine the image",
    ),
    Choice("quarantine", "quarantine", "Q", help="take the image out of the data set"),
    Choice(
        "reject",
        "no mistake",
        "D",
        help="different people · filed right · keep both copies",
    ),
    Choice("skip", "skip", "X", help="leaves the queue; find it again under state 'skipped'"),
)

FILE_ACTIONS_OFF = (
    "File actions are off: this page only records decisions (no file moves). Merging "
    "folders, moving or quarantining images needs `--allow-file-actions` (or "
    "`allow_file_actions = true` in facelint.toml)."
)


@dataclass(frozen=True)
class Card:
    """A suggestion with what its card shows, loaded with the page."""

    s: Suggestion
    sizes: dict[str, int] = field(default_factory=dict)
    strips: dict[str, list[ImageInfo]] = field(default_factory=dict)
    image: ImageInfo | None = None  # misfiled, stranger: the image; duplicate: the copy
    first_copy: ImageInfo | None = None  # duplicate: the first copy by path


def card_key(card: Card) -> str:
    # Ids hold ':' (same:3:7); a key becomes a CSS class (st-key-...), so keep it plain.
    return re.sub(r"[^A-Za-z0-9_-]", "-", card.s.id)


def card_choices(card: Card, files_on: bool) -> Sequence[Choice]:
    s = card.s
    skip = CHOICES[3]
    if s.kind == "same_person":
        merge = (
            Choice(
                "accept",
                "merge folders",
                "A",
                help="moves every file of the other "
                "folder into the surviving one (one undo takes it all back)",
            )
            if files_on
            else Choice("accept", "same person", "A", help="records the decision, moves no file")
        )
        return (merge, Choice("reject", "different people", "D"), skip)
    keep = Choice("reject", "filed right" if s.kind != "duplicate" else "keep both", "D")
    quarantine = Choice(
        "quarantine" if s.kind == "misfiled" else "accept",
        # Short labels: the card's button column is narrow; the help says the rest.
        "quarantine",
        "Q",
        help=f"moves {s.path} to the quarantine folder (kept, not deleted)"
        if files_on
        else "records the decision, moves no file",
    )
    if s.kind == "misfiled":
        move = Choice(
            "accept",
            "move image",
            "A",
            help=f"moves {s.path} into {s.class_b}/"
            if files_on
            else f"records that it belongs in {s.class_b}",
        )
        return (move, quarantine, keep, skip)
    return (quarantine, keep, skip)


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


def decide(settings: DashboardSettings, card: Card, value: str) -> Done:
    """What a decision does: a guarded file action when file actions are on, a recorded
    decision otherwise; always recorded through store.suggestions.decide."""
    s = card.s
    on = settings.allow_file_actions
    if value == "skip":
        return actions.record_suggestion(settings, s, "skipped")
    if value == "reject":
        return actions.record_suggestion(settings, s, "rejected")
    if s.kind == "same_person":
        if value == "quarantine":
            raise FileActionRefused(
                "a same-person suggestion has no one image to quarantine: merge (A), "
                "different people (D) or skip (X)"
            )
        keep = surviving(card)
        if on:
            return actions.merge(settings, s, keep)
        return actions.record_suggestion(settings, s, "accepted", target=keep)
    if s.kind == "misfiled" and value == "accept":
        if on:
            return actions.move_image(settings, s)
        return actions.record_suggestion(settings, s, "accepted", target=s.class_b)
    if on:
        return actions.quarantine_image(settings, s)
    return actions.record_suggestion(settings, s, "accepted", target=settings.quarantine)


# -- loading -------------------------------------------------------------------------------


def _filters() -> tuple[str, tuple[str, ...]]:
    st.session_state.setdefault("m_state", "open")
    st.session_state.setdefault("m_kinds", [])
    with st.sidebar:
        st.subheader("Filters")
        kinds = st.multiselect(
            "kind",
            list(KIND_LABELS),
            format_func=KIND_LABELS.__getitem__,
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
    sizes = mistake_cards.folder_sizes(con, folders)
    # One more than shown: the card's own image is left out of its folder's strip.
    strip_paths = {k: mistake_cards.folder_paths(con, k, STRIP + 1) for k in folders}
    # A duplicate's first copy: the first other path with the same content.
    firsts = {
        s.id: next((p for p in mistake_cards.copies(con, s.hash) if p != s.path), None)
        for s in rows
        if s.kind == "duplicate" and s.hash
    }
    wanted = [p for ps in strip_paths.values() for p in ps]
    wanted += [s.path for s in rows if s.path] + [p for p in firsts.values() if p]
    info = image_rows.images_by_path(con, wanted)
    cards = []
    for s in rows:
        strips = {
            k: [info[p] for p in strip_paths[k] if p in info and p != s.path][:STRIP]
            for k in (s.class_a, s.class_b)
            if k
        }
        first = info.get(firsts.get(s.id) or "")
        cards.append(Card(s, sizes, strips, info.get(s.path or ""), first))
    return cards, total


# -- drawing -------------------------------------------------------------------------------


def _strip(
    settings: DashboardSettings, klass: str, card: Card, shown: int = ROW, columns: int = ROW
) -> None:
    size = card.sizes.get(klass, 0)
    st.markdown(
        f"**{ui.md(klass)}** · {size:,} image{'s' if size != 1 else ''} · "
        f"[image search ↗]({ui.search_url(klass)})"
    )
    images = card.strips.get(klass, [])[:shown]
    if not images:
        st.caption("no other image in this folder")
        return
    cols = st.columns(columns)
    for i, image in enumerate(images):
        with cols[i % columns]:
            ui.show_image(settings, image, THUMB, caption=image.name, face=True)


def _the_image(settings: DashboardSettings, image: ImageInfo | None, path: str | None) -> None:
    if image is None:
        st.warning(f"{path} is not in the store any more (moved since the last scan?)")
        return
    st.markdown(f"**{ui.md(image.path)}**")
    face, photo = st.columns([FACE, PHOTO], vertical_alignment="top")
    with face:
        shown = ui.show_image(settings, image, FACE, caption="face", face=True)
    if shown:
        with photo:
            ui.show_image(settings, image, PHOTO, caption="photo")


def render_card(settings: DashboardSettings, card: Card) -> None:
    s = card.s
    st.markdown(f"**{KIND_LABELS.get(s.kind, s.kind)}** · {ui.md(s.evidence)}")
    if s.kind == "same_person":
        left, right = st.columns(2)
        for col, klass in ((left, s.class_a), (right, s.class_b)):
            if klass:
                with col:
                    _strip(settings, klass, card, STRIP, STRIP_COLUMNS)
        if settings.allow_file_actions and s.state == "open" and s.class_a and s.class_b:
            names = [s.class_a, s.class_b]
            st.radio(
                "surviving name (the other folder's files move into it)",
                names,
                index=names.index(surviving(card)),
                key=_keep_key(card),
                horizontal=True,
            )
    elif s.kind in ("misfiled", "stranger"):
        image_col, strips_col = st.columns([2, 3])
        with image_col:
            _the_image(settings, card.image, s.path)
        with strips_col:
            if s.class_a:
                st.caption("its folder now")
                _strip(settings, s.class_a, card)
            if s.kind == "misfiled" and s.class_b:
                st.caption("the proposed folder: **move image** (A) moves it here")
                _strip(settings, s.class_b, card)
    else:
        copy_col, first_col = st.columns(2)
        with copy_col:
            st.caption("the copy")
            _the_image(settings, card.image, s.path)
        with first_col:
            st.caption("the first copy")
            first = card.first_copy
            _the_image(settings, first, first.path if first else f"{s.class_b}/…")


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
        decided = f"  \n**{s.state}**" + (f" by {ui.md(s.decided_by)}" if s.decided_by else "")
        return f"confidence **{s.rank_score:.2f}**" + (decided if s.state != "open" else "")

    def title(card: Card) -> str:
        return actions.suggestion_title(card.s)

    def draw(card: Card, focused: bool) -> None:
        render_card(settings, card)
        if card.s.state != "open":
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
        if state == "open":
            # Decided since this page was loaded: out of the queue.
            total -= len(st.session_state.get("q_mistakes_decided", {}))
        what = (
            STATE_LABELS[state]
            + " suggestions"
            + (f" ({', '.join(KIND_LABELS[k] for k in kinds)})" if kinds else "")
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
        decide=lambda card, value: decide(settings, card, value).message,
        undo=undo,
        header=header,
        footer=footer,
        summary=summary,
        title=title,
        card_choices=lambda card: card_choices(card, settings.allow_file_actions),
        empty=lambda: _live_empty(settings, state, kinds),
    )
    st.caption(shortcuts_help(queue))
    queue.render()


def _live_empty(settings: DashboardSettings, state: str, kinds: tuple[str, ...]) -> None:
    """An empty queue says what the daemon is doing, and looks again by itself."""
    if state != "open":
        return
    from dashboard.views.status import live_line

    @st.fragment(run_every=5)
    def live() -> None:
        line = live_line(settings)
        st.info(
            (f"{line}. " if line else "")
            + "Nothing to review: new suggestions appear here as the daemon finds them."
        )
        found = ui.query(settings, lambda con: suggestions.count(con, "open", kinds))
        if found:
            st.session_state["q_mistakes_stale"] = True
            st.rerun()

    live()


if __name__ == "__main__":
    render(current())
