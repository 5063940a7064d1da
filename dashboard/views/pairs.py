"""The pairs page: a keyboard queue of the best unreviewed pairs, faces side by side."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import streamlit as st

from dashboard import actions, db, files, ui
from dashboard.queue import CardQueue, Choice, shortcuts_help
from dashboard.settings import DashboardSettings, current
from store import actions as action_log
from store import meta as store_meta
from store.actions import ActionRow
from store.connection import StoreBusy, StoreMissing
from store.queries import images as image_rows
from store.queries import pairs_page
from store.queries.pairs_page import PairFilter, PairView
from store.vocab import Decision

STATE_LABELS = {
    "unreviewed": "unreviewed",
    Decision.SKIPPED: "skipped",
    Decision.DIFFERENT: "different people",
    Decision.SAME: "same person",
    Decision.REMOVED: "image removed",
    "decided": "any decision but skip",
    "all": "all",
}
FACE_SIDE = 170
WHOLE_SIDE = 100
PERSON_PAGE = "views/person.py"

CHOICES = (
    Choice(Decision.DIFFERENT, "different people", "D", primary=True),
    Choice(Decision.SAME, "same person", "S", help="records the decision and moves no file"),
    Choice(
        Decision.SKIPPED,
        "skip",
        "X",
        help="leaves the unreviewed list; find it again under review state 'skipped'",
    ),
)

FILE_ACTIONS_OFF = (
    "File actions are off: this dashboard only records decisions. Moving an image to the "
    "other folder or removing it from the data set needs `--allow-file-actions` (or "
    "`allow_file_actions = true` in facelint.toml)."
)


def _threshold(settings: DashboardSettings) -> float:
    """Where the score slider starts: nothing below the store's threshold is stored."""
    if "pairs_threshold" not in st.session_state:
        found = db_threshold(settings)
        if found is None:
            return 0.0  # not known yet (store busy, or never compared): ask again next run
        st.session_state["pairs_threshold"] = found
    # Down to the slider's step, so the lowest stored pair is inside the range.
    return int(st.session_state["pairs_threshold"] * 100) / 100


def db_threshold(settings: DashboardSettings) -> float | None:
    try:
        return db.read(settings, store_meta.threshold)
    except (StoreBusy, StoreMissing, duckdb.Error):
        # The page's own queries say why in a moment; the slider just starts at 0.
        return None


def _filters(settings: DashboardSettings) -> tuple[PairFilter, int]:
    low_end = _threshold(settings)
    # Defaults through Session State only (no `value=` as well): giving both makes
    # Streamlit warn on every run in which a page set the state.
    st.session_state.setdefault("f_score", (low_end, 1.0))
    st.session_state.setdefault("f_state", "unreviewed")
    st.session_state.setdefault("f_size", settings.page_size)
    with st.sidebar:
        st.subheader("Filters")
        low, high = st.slider(
            "score", low_end, 1.0, step=0.01, key="f_score", help="calibrated score range"
        )
        search = st.text_input("class name contains", key="f_search", help="any part, any case")
        state = st.selectbox(
            "review state",
            list(STATE_LABELS),
            format_func=STATE_LABELS.__getitem__,
            key="f_state",
        )
        sizes = sorted({3, 5, 10, 20, 50, settings.page_size})
        size = st.selectbox("pairs per page", sizes, key="f_size")
    flt = PairFilter(min_score=low, max_score=high, class_search=search, state=state)
    return flt, int(size)


def _paging(flt: PairFilter, size: int) -> tuple[int, pairs_page.Cursor | None]:
    """(page number, the cursor the page starts after); a new filter starts at page 1."""
    if st.session_state.get("pair_filter") != (flt, size):
        st.session_state["pair_filter"] = (flt, size)
        st.session_state["pair_pos"] = (1, None)
    return st.session_state["pair_pos"]


def _next_page(cursor: pairs_page.Cursor) -> None:
    page, _ = st.session_state["pair_pos"]
    st.session_state["pair_pos"] = (page + 1, cursor)


def _go_to_page(settings: DashboardSettings, flt: PairFilter, size: int, page: int) -> None:
    """Any page by number: the cursor before it is found with one query (keyset paging
    has no page numbers of its own)."""
    page = max(1, page)
    if page == 1:
        st.session_state["pair_pos"] = (1, None)
        return
    cursor = ui.query(settings, lambda con: pairs_page.cursor_at(con, flt, (page - 1) * size - 1))
    if cursor is not None:
        st.session_state["pair_pos"] = (page, cursor)


def class_heading(klass: str) -> None:
    st.markdown(f"**{ui.md(klass)}** · [image search ↗]({ui.search_url(klass)})")


def person_link(klass: str) -> None:
    st.page_link(
        PERSON_PAGE, label="person", query_params={"name": klass}, icon=":material/person:"
    )


def _moved_note(image: image_rows.ImageInfo, moves: dict[str, ActionRow]) -> None:
    move = moves.get(image.path)
    if move is not None:
        st.info(
            ui.md(
                f"{image.path} was moved to {move.dst} (action #{move.id}); the store "
                "follows when the daemon or the next scan sees it."
            )
        )


def _side(
    settings: DashboardSettings,
    pair: PairView,
    side: str,
    moves: dict[str, ActionRow],
) -> None:
    image, other = (pair.a, pair.b) if side == "a" else (pair.b, pair.a)
    label = "left" if side == "a" else "right"
    class_heading(image.klass)
    note = ""
    if image.whole_image:
        note = " · no face found, whole image used"
    elif (image.faces or 0) > 1:
        note = f" · {image.faces} faces, the boxed one stands for the image"
    face_col, whole_col = st.columns([FACE_SIDE, WHOLE_SIDE], vertical_alignment="top")
    if image.path in moves and not files.exists(settings.root, image.path):
        with face_col:
            _moved_note(image, moves)
        shown = False
    else:
        with face_col:
            shown = ui.show_image(settings, image, FACE_SIDE, caption=image.name, face=True)
        if shown:
            with whole_col:
                ui.show_image(settings, image, WHOLE_SIDE, caption=note.strip(" ·") or None)
                person_link(image.klass)
    if settings.allow_file_actions:
        there = "right" if side == "a" else "left"
        move_col, remove_col = st.columns(2)
        move_col.button(
            f"move to the {there} folder",
            key=f"move-{side}-{pair.lo}-{pair.hi}",
            help=ui.md(f"same person: moves {image.path} into {other.klass}/"),
            on_click=_reloading,
            args=(actions.relabel, settings, pair, side),
            disabled=not shown,
        )
        remove_col.button(
            f"remove {label}",
            key=f"remove-{side}-{pair.lo}-{pair.hi}",
            help=ui.md(
                f"moves {image.path} to {settings.quarantine}/{image.klass}/ (kept, not deleted)"
            ),
            on_click=_reloading,
            args=(actions.quarantine, settings, pair, side),
            disabled=not shown,
        )


def pair_key(pair: PairView) -> str:
    return f"{pair.lo}-{pair.hi}"


def _reloading(fn, *args) -> None:
    """A button's action that changes the queue behind its back (a move, a cleared
    decision): the queue loads its cards again afterwards."""
    ui.act(fn, *args)
    st.session_state["q_pairs_stale"] = True


def render(settings: DashboardSettings) -> None:
    st.header("Pairs")
    flt, size = _filters(settings)
    if not settings.allow_file_actions:
        st.caption(FILE_ACTIONS_OFF)

    def context() -> tuple:
        return (flt, size, _paging(flt, size))

    def load() -> list[PairView] | None:
        _, after = _paging(flt, size)

        def read(con):
            page = pairs_page.pair_page(con, flt, size + 1, after)
            total = pairs_page.count_pairs(con, flt)
            paths = [p.a.path for p in page] + [p.b.path for p in page]
            keys = [(p.a.id, p.b.klass) for p in page] + [(p.b.id, p.a.klass) for p in page]
            groups = pairs_page.image_class_counts(con, flt, keys)
            return page, total, action_log.last_moves_from(con, paths), groups

        got = ui.query(settings, read, keep="pairs")
        if got is None:
            return None
        page, total, moves, groups = got
        st.session_state["pairs_meta"] = {
            "more": len(page) > size,
            "total": total,
            "moves": moves,
            "groups": groups,
            "next": page[size - 1].cursor if len(page) > size else None,
        }
        return page[:size]

    def meta() -> dict:
        return st.session_state.get("pairs_meta", {})

    def summary(pair: PairView) -> str:
        decided = f"  \ndecision: **{ui.md(pair.decision)}**" if pair.decision else ""
        return f"score **{pair.score:.3f}**  \ncosine {pair.cosine:.3f}{decided}"

    def title(pair: PairView) -> str:
        return f"{pair.a.path} / {pair.b.path}"

    def card(pair: PairView, focused: bool) -> None:
        left, right = st.columns(2, border=False)
        moves = meta().get("moves", {})
        with left:
            _side(settings, pair, "a", moves)
            _group(pair, "a")
        with right:
            _side(settings, pair, "b", moves)
            _group(pair, "b")
        if pair.decision:
            st.button(
                "clear decision",
                key=f"clear-{pair_key(pair)}",
                on_click=_reloading,
                args=(actions.clear, settings, pair),
            )

    def _group(pair: PairView, side: str) -> None:
        """One image matching several of the other class: say so, decide them at once."""
        image, other = (pair.a, pair.b) if side == "a" else (pair.b, pair.a)
        n = meta().get("groups", {}).get((image.id, other.klass), 0)
        if n < 2:
            return
        st.caption(f"{ui.md(image.name)} matches {n} images of {ui.md(other.klass)}")
        st.button(
            f"different people, all {n}",
            key=f"group-different-{side}-{pair_key(pair)}",
            help=ui.md(f"{image.name} is not {other.klass}: records 'different' for all {n} pairs"),
            on_click=_reloading,
            args=(actions.decide_group, settings, image, other.klass, flt, Decision.DIFFERENT),
        )

    def decide(pair: PairView, value: str) -> str:
        return actions.decide(settings, pair, Decision(value)).message

    def undo(pair: PairView, value: str) -> str:
        return actions.clear(settings, pair, only_if=Decision(value)).message

    def header(page: Sequence[PairView]) -> None:
        # File moves report here (with their undo button); decisions report by toast.
        ui.show_flash(lambda action_id: _reloading(actions.undo, settings, action_id))
        page_no, _ = _paging(flt, size)
        first = (page_no - 1) * size
        total = int(meta().get("total", 0))
        if flt.state == "unreviewed":
            # Decided since this page was loaded: no longer unreviewed.
            total -= len(st.session_state.get("q_pairs_decided", {}))
        if page:
            st.caption(
                f"{total:,} {STATE_LABELS[flt.state]} pairs match · showing "
                f"{first + 1:,}–{first + len(page):,}, best score first"
            )
        else:
            st.write(f"No {STATE_LABELS[flt.state]} pairs match.")

    def footer(page: Sequence[PairView]) -> None:
        page_no, _ = _paging(flt, size)
        pages = max(1, -(-int(meta().get("total", 0)) // size))
        prev_col, jump_col, next_col = st.columns([2, 3, 2], vertical_alignment="bottom")
        prev_col.button(
            "← previous page",
            key="pairs-prev",
            disabled=page_no == 1,
            on_click=_go_to_page,
            args=(settings, flt, size, page_no - 1),
        )
        with jump_col, st.form("pairs-jump", border=False):
            st.number_input(
                f"page {page_no:,} of {pages:,}: go to page",
                min_value=1,
                max_value=pages,
                value=min(page_no, pages),
                step=1,
                # Keyed by the page shown: after a jump the box is a new one, so the
                # focus it held goes back to the cards (the queue's focus script).
                key=f"pairs-jump-{page_no}",
                help="type a page number; Enter goes there",
            )
            st.form_submit_button(
                "go",
                on_click=lambda: _go_to_page(
                    settings, flt, size, int(st.session_state[f"pairs-jump-{page_no}"])
                ),
            )
        next_col.button(
            "next page →",
            key="pairs-next",
            disabled=not meta().get("more"),
            on_click=_next_page,
            args=(meta().get("next"),),
        )

    queue: CardQueue[PairView] = CardQueue(
        name="pairs",
        choices=CHOICES,
        load=load,
        context=context,
        key=pair_key,
        render_card=card,
        decide=decide,
        undo=undo,
        header=header,
        footer=footer,
        summary=summary,
        title=title,
        empty=lambda: _live_empty(settings, flt),
    )
    st.caption(shortcuts_help(queue))
    queue.render()


def _live_empty(settings: DashboardSettings, flt: PairFilter) -> None:
    """An empty queue says what the daemon is doing, and looks again by itself."""
    if flt.state != "unreviewed":
        return
    from dashboard.views.status import live_line

    @st.fragment(run_every=5)
    def live() -> None:
        line = live_line(settings)
        if line:
            st.info(ui.md(f"{line}. New pairs appear here as they are found."))
        count = ui.query(settings, lambda con: pairs_page.count_pairs(con, flt))
        if count:
            # Pairs arrived: redraw the queue with them.
            st.rerun()

    live()


if __name__ == "__main__":
    render(current())
