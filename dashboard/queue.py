"""A review queue cleared from the keyboard: compact cards, one of them focused, a
shortcut per decision, next/previous, undo last.

Reusable for any queue of cards (pairs today; suggested mistakes next): the caller says
how to load the open cards, how to draw one, and how to store a decision.

    q = CardQueue(
        name="pairs",
        choices=[Choice("different", "different people", "D"), ...],
        load=lambda: ...,             # the cards to show now, in order (None: not now)
        key=lambda card: "12-34",     # stable and unique per card
        render_card=draw,             # draw(card, focused) inside the card's box
        decide=store_it,              # store_it(card, "different") -> confirmation text
        undo=take_back,               # take_back(card, "different") -> confirmation text
    )
    q.render()

The whole queue is one `st.fragment`: a decision reruns the queue, not the page. Each
card has a button per choice (key `<choice>-<card key>`) for the mouse; the keyboard
drives a toolbar of shortcut buttons acting on the focused card, because Streamlit
allows each shortcut on one button per page. Streamlit has no focus API, so a few lines
of script (`st.html`, run in the page) move the browser's focus to the focused card
after each run; Enter then presses that card's first button.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import duckdb
import streamlit as st

from dashboard.files import FileActionRefused, UnsafePath
from store.connection import StoreBusy, StoreMissing

T = TypeVar("T")

# What a failed decision can raise; anything else is a bug and shows as one.
REFUSALS: tuple[type[Exception], ...] = (
    FileActionRefused,
    UnsafePath,
    StoreBusy,
    StoreMissing,
    duckdb.Error,
    OSError,
)


@dataclass(frozen=True)
class Choice:
    """One decision a card can get."""

    value: str  # what `decide` receives
    label: str
    shortcut: str  # a letter or key name as st.button(shortcut=...) takes it
    help: str = ""
    primary: bool = False


@dataclass(frozen=True)
class Keys:
    """Shortcuts of the queue itself. "C" and "R" are Streamlit's own."""

    next: str = "J"
    previous: str = "K"
    undo: str = "U"


@dataclass
class CardQueue(Generic[T]):
    name: str
    choices: Sequence[Choice]
    load: Callable[[], Sequence[T] | None]
    key: Callable[[T], str]
    render_card: Callable[[T, bool], None]
    decide: Callable[[T, str], str]
    undo: Callable[[T, str], str] | None = None
    keys: Keys = field(default_factory=Keys)
    # Drawn when no card is left (e.g. what the daemon is doing); inside the fragment.
    empty: Callable[[], None] | None = None
    # Drawn under the cards inside the fragment (paging, counts).
    footer: Callable[[Sequence[T]], None] | None = None
    # Drawn above the cards inside the fragment.
    header: Callable[[Sequence[T]], None] | None = None

    # -- state, all in st.session_state under the queue's name ---------------------------

    @property
    def _focus_key(self) -> str:
        return f"q_{self.name}_focus"

    @property
    def _order_key(self) -> str:
        return f"q_{self.name}_order"

    @property
    def _undo_key(self) -> str:
        return f"q_{self.name}_undo"

    @property
    def _toast_key(self) -> str:
        return f"q_{self.name}_toast"

    def container_key(self, card_key: str) -> str:
        """The card's st.container key: the browser sees it as the CSS class st-key-<it>."""
        return f"qcard-{self.name}-{card_key}"

    # -- actions (button callbacks: they run before the fragment reruns) -----------------

    def _move_focus(self, step: int) -> None:
        order: list[str] = st.session_state.get(self._order_key, [])
        if not order:
            return
        current = st.session_state.get(self._focus_key)
        i = order.index(current) if current in order else 0
        st.session_state[self._focus_key] = order[max(0, min(len(order) - 1, i + step))]

    def _decide(self, card: T, value: str) -> None:
        card_key = self.key(card)
        order: list[str] = st.session_state.get(self._order_key, [])
        try:
            message = self.decide(card, value)
        except REFUSALS as exc:
            st.session_state[self._toast_key] = (f"not done: {exc}", "⚠️")
            return
        # The next card takes the focus: the one after this in the order shown.
        if card_key in order:
            i = order.index(card_key)
            rest = order[i + 1 :] or order[:i][-1:]
            st.session_state[self._focus_key] = rest[0] if rest else None
        stack: list[tuple[T, str]] = st.session_state.setdefault(self._undo_key, [])
        stack.append((card, value))
        del stack[:-50]
        st.session_state[self._toast_key] = (message, "✅")

    def _decide_focused(self, value: str) -> None:
        card = st.session_state.get(f"q_{self.name}_focused_card")
        if card is not None:
            self._decide(card, value)

    def _undo_last(self) -> None:
        stack: list[tuple[T, str]] = st.session_state.get(self._undo_key, [])
        if not stack or self.undo is None:
            st.session_state[self._toast_key] = ("nothing to undo", "ℹ️")
            return
        card, value = stack[-1]
        try:
            message = self.undo(card, value)
        except REFUSALS as exc:
            st.session_state[self._toast_key] = (f"undo not done: {exc}", "⚠️")
            return
        stack.pop()
        st.session_state[self._focus_key] = self.key(card)
        st.session_state[self._toast_key] = (message, "↩️")

    # -- drawing -------------------------------------------------------------------------

    def _toolbar(self, focused: T | None) -> None:
        cols = st.columns(len(self.choices) + 3)
        for col, choice in zip(cols, self.choices, strict=False):
            col.button(
                choice.label,
                key=f"q-{self.name}-{choice.value}",
                shortcut=choice.shortcut,
                help=choice.help or None,
                type="primary" if choice.primary else "secondary",
                disabled=focused is None,
                on_click=self._decide_focused,
                args=(choice.value,),
                width="stretch",
            )
        extra = cols[len(self.choices) :]
        extra[0].button(
            "previous",
            key=f"q-{self.name}-previous",
            shortcut=self.keys.previous,
            on_click=self._move_focus,
            args=(-1,),
            width="stretch",
        )
        extra[1].button(
            "next",
            key=f"q-{self.name}-next",
            shortcut=self.keys.next,
            on_click=self._move_focus,
            args=(1,),
            width="stretch",
        )
        extra[2].button(
            "undo last",
            key=f"q-{self.name}-undo",
            shortcut=self.keys.undo,
            disabled=self.undo is None or not st.session_state.get(self._undo_key),
            on_click=self._undo_last,
            width="stretch",
        )

    def _card(self, card: T, focused: bool) -> None:
        card_key = self.key(card)
        with st.container(border=True, key=self.container_key(card_key)):
            self.render_card(card, focused)
            for col, choice in zip(st.columns(len(self.choices)), self.choices, strict=True):
                col.button(
                    choice.label,
                    key=f"{choice.value}-{card_key}",
                    type="primary" if choice.primary and focused else "secondary",
                    help=choice.help or None,
                    on_click=self._decide,
                    args=(card, choice.value),
                    width="stretch",
                )

    def _focus_script(self, card_key: str | None) -> None:
        """Move the browser's focus to the focused card's first button and bring the card
        into view. The run counter makes each run's script new, so it runs again."""
        runs = st.session_state.get(f"q_{self.name}_runs", 0) + 1
        st.session_state[f"q_{self.name}_runs"] = runs
        target = "" if card_key is None else "st-key-" + self.container_key(card_key)
        st.html(
            f"""<script>/* {runs} */
(() => {{
  const cls = {json.dumps(target)};
  const mark = () => {{
    document.querySelectorAll('[data-facelint-focus]').forEach(e => {{
      e.removeAttribute('data-facelint-focus'); e.style.outline = '';
    }});
    if (!cls) return true;
    const box = document.getElementsByClassName(cls)[0];
    if (!box) return false;
    const btn = box.querySelector('button:not([disabled])');
    if (!btn) return false;
    box.setAttribute('data-facelint-focus', '1');
    box.style.outline = '3px solid #ff4b4b';
    box.style.borderRadius = '0.5rem';
    const active = document.activeElement;
    // Never take the focus from someone typing in a box.
    if (active && ['INPUT', 'TEXTAREA'].includes(active.tagName)) return true;
    btn.focus({{preventScroll: true}});
    box.scrollIntoView({{block: 'nearest'}});
    return true;
  }};
  if (!mark()) {{
    // The card may be drawn a moment after this script: try again for a while.
    let tries = 0;
    const timer = setInterval(() => {{ if (mark() || ++tries > 50) clearInterval(timer); }}, 20);
  }}
}})();
</script>""",
            unsafe_allow_javascript=True,
            width="content",
        )

    def render(self) -> None:
        """Draw the queue (a fragment: its buttons rerun only the queue)."""

        @st.fragment
        def queue() -> None:
            toast = st.session_state.pop(self._toast_key, None)
            if toast is not None:
                st.toast(toast[0], icon=toast[1])
            cards = self.load()
            if cards is None:
                return
            by_key = {self.key(c): c for c in cards}
            order = list(by_key)
            st.session_state[self._order_key] = order
            focus = st.session_state.get(self._focus_key)
            if focus not in by_key:
                focus = order[0] if order else None
                st.session_state[self._focus_key] = focus
            focused = by_key.get(focus) if focus is not None else None
            st.session_state[f"q_{self.name}_focused_card"] = focused
            if self.header is not None:
                self.header(cards)
            self._toolbar(focused)
            if not cards and self.empty is not None:
                self.empty()
            for card in cards:
                self._card(card, self.key(card) == focus)
            if self.footer is not None:
                self.footer(cards)
            self._focus_script(focus)

        queue()


def shortcuts_help(queue: CardQueue) -> str:
    """One line naming every key of a queue, for a caption."""
    keys = [f"**{c.shortcut}** {c.label}" for c in queue.choices]
    keys += [
        f"**{queue.keys.next}**/**{queue.keys.previous}** next/previous card",
        f"**{queue.keys.undo}** undo last",
        "**Enter** presses the focused card's first button",
    ]
    return " · ".join(keys)
