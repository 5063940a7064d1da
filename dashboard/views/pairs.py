"""The pairs page: the best unreviewed pairs, two images side by side, one click each."""

from __future__ import annotations

import streamlit as st

from dashboard import actions, files, ui
from dashboard.settings import DashboardSettings
from store import review
from store.review import ActionRow, PairFilter, PairView

STATE_LABELS = {
    "unreviewed": "unreviewed",
    "skipped": "skipped",
    "different": "different people",
    "same": "same person",
    "removed": "image removed",
    "decided": "any decision but skip",
    "all": "all",
}
IMAGE_SIDE = 400

FILE_ACTIONS_OFF = (
    "File actions are off: this dashboard only records decisions. Moving an image to the "
    "other folder or removing it from the data set needs `--allow-file-actions` (or "
    "`allow_file_actions = true` in facelint.toml)."
)


def _filters(settings: DashboardSettings) -> tuple[PairFilter, int]:
    with st.sidebar:
        st.subheader("Filters")
        low, high = st.slider("score", -1.0, 1.0, (0.0, 1.0), step=0.01, key="f_score")
        search = st.text_input("class name contains", key="f_search")
        state = st.selectbox(
            "review state",
            list(STATE_LABELS),
            format_func=STATE_LABELS.__getitem__,
            key="f_state",
        )
        sizes = sorted({5, 10, 20, 50, settings.page_size})
        size = st.selectbox(
            "pairs per page", sizes, index=sizes.index(settings.page_size), key="f_size"
        )
    flt = PairFilter(min_score=low, max_score=high, class_search=search, state=state)
    return flt, int(size)


def _paging(flt: PairFilter, size: int) -> list[review.Cursor | None]:
    """The cursors of the pages seen so far; a new filter starts again at page 1."""
    if st.session_state.get("pair_filter") != (flt, size):
        st.session_state["pair_filter"] = (flt, size)
        st.session_state["pair_cursors"] = [None]
    return st.session_state["pair_cursors"]


def _next_page(cursor: review.Cursor) -> None:
    st.session_state["pair_cursors"].append(cursor)


def _previous_page() -> None:
    if len(st.session_state["pair_cursors"]) > 1:
        st.session_state["pair_cursors"].pop()


def open_person(klass: str) -> None:
    st.session_state["page"] = "Person"
    st.session_state["person"] = klass


def class_heading(klass: str, key: str) -> None:
    name, button = st.columns([3, 1], vertical_alignment="center")
    name.markdown(f"**{ui.md(klass)}** · [image search ↗]({ui.search_url(klass)})")
    button.button("person page", key=key, type="tertiary", on_click=open_person, args=(klass,))


def _moved_note(image: review.ImageInfo, moves: dict[str, ActionRow]) -> None:
    move = moves.get(image.path)
    if move is not None:
        st.info(
            f"{image.path} was moved to {move.dst} (action #{move.id}); the store follows "
            "when the daemon or the next scan sees it."
        )


def _side(
    settings: DashboardSettings,
    pair: PairView,
    side: str,
    moves: dict[str, ActionRow],
) -> bool:
    image, other = (pair.a, pair.b) if side == "a" else (pair.b, pair.a)
    label = "left" if side == "a" else "right"
    class_heading(image.klass, f"person-{side}-{pair.lo}-{pair.hi}")
    note = "" if not image.whole_image else " · no face found, whole image used"
    if image.path in moves and not files.exists(settings.root, image.path):
        _moved_note(image, moves)
        shown = False
    else:
        shown = ui.show_image(settings, image, IMAGE_SIDE, caption=f"{image.name}{note}")
    if settings.allow_file_actions:
        there = "right" if side == "a" else "left"
        st.button(
            f"same person — move {label} image to the {there} folder",
            key=f"move-{side}-{pair.lo}-{pair.hi}",
            help=f"moves {image.path} into {other.klass}/",
            on_click=ui.act,
            args=(actions.relabel, settings, pair, side),
            disabled=not shown,
        )
        st.button(
            f"remove {label} from the data set",
            key=f"remove-{side}-{pair.lo}-{pair.hi}",
            help=f"moves {image.path} to {settings.quarantine}/{image.klass}/ (kept, not deleted)",
            on_click=ui.act,
            args=(actions.quarantine, settings, pair, side),
            disabled=not shown,
        )
    return shown


def _pair(settings: DashboardSettings, pair: PairView, moves: dict[str, ActionRow]) -> None:
    with st.container(border=True):
        decided = f" · decision: **{pair.decision}**" if pair.decision else ""
        st.markdown(f"score **{pair.score:.4f}** (cosine {pair.cosine:.4f}){decided}")
        left, right = st.columns(2)
        with left:
            _side(settings, pair, "a", moves)
        with right:
            _side(settings, pair, "b", moves)
        buttons = st.columns(4)
        key = f"{pair.lo}-{pair.hi}"
        buttons[0].button(
            "different people",
            key=f"different-{key}",
            type="primary",
            on_click=ui.act,
            args=(actions.decide, settings, pair, "different"),
        )
        buttons[1].button(
            "same person — record only",
            key=f"same-{key}",
            help="records the decision and moves no file",
            on_click=ui.act,
            args=(actions.decide, settings, pair, "same"),
        )
        buttons[2].button(
            "skip",
            key=f"skip-{key}",
            help="leaves the unreviewed list; find it again under review state 'skipped'",
            on_click=ui.act,
            args=(actions.decide, settings, pair, "skip"),
        )
        if pair.decision:
            buttons[3].button(
                "clear decision",
                key=f"clear-{key}",
                on_click=ui.act,
                args=(actions.clear, settings, pair),
            )


def render(settings: DashboardSettings) -> None:
    st.header("Pairs")
    flt, size = _filters(settings)
    cursors = _paging(flt, size)
    after = cursors[-1]

    def load(con):
        page = review.pair_page(con, flt, size + 1, after)
        total = review.count_pairs(con, flt)
        paths = [p.a.path for p in page] + [p.b.path for p in page]
        return page, total, review.last_moves_from(con, paths)

    loaded = ui.query(settings, load)
    if loaded is None:
        return
    page, total, moves = loaded
    more = len(page) > size
    page = page[:size]
    if not settings.allow_file_actions:
        st.info(FILE_ACTIONS_OFF)
    first = (len(cursors) - 1) * size
    if not page:
        st.write(f"No {STATE_LABELS[flt.state]} pairs match.")
    else:
        st.caption(
            f"{total:,} {STATE_LABELS[flt.state]} pairs match · showing "
            f"{first + 1:,}–{first + len(page):,}, best score first"
        )
    for pair in page:
        _pair(settings, pair, moves)
    prev_col, next_col = st.columns(2)
    prev_col.button(
        "← previous page", key="pairs-prev", disabled=len(cursors) == 1, on_click=_previous_page
    )
    next_col.button(
        "next page →",
        key="pairs-next",
        disabled=not more,
        on_click=_next_page,
        args=(page[-1].cursor if page else None,),
    )
