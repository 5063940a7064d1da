"""A review queue cleared from the keyboard: compact cards, one of them focused, a
shortcut per decision, next/previous, undo last.

Reusable for any queue of cards (pairs today; suggested mistakes next): the caller says
how to load a page of open cards, how to draw one, and how to store a decision.

    q = CardQueue(
        name="pairs",
        choices=[Choice("different", "different people", "D", primary=True), ...],
        load=lambda: ...,             # the page of cards to show (None: not now, e.g. busy)
        context=lambda: (filters, page),  # a new value loads again, same keeps the page
        key=lambda card: "12-34",     # stable and unique per card
        render_card=draw,             # draw(card, focused) inside the card's box
        decide=store_it,              # store_it(card, "different") -> confirmation text
        undo=take_back,               # take_back(card, "different") -> confirmation text
    )
    q.render()

How it stays fast: the queue is one `st.fragment`, so a decision reruns the queue, not
the page; and the page of cards is loaded once and kept (in Session State) until every
card on it is decided, the context changes or the reader asks for a reload. A decided
card collapses in place to one line with its decision, so every other card is redrawn
unchanged where it was: the browser replaces one card, not the page.

Keyboard: each card has a button per choice (key `<choice>-<card key>`) for the mouse;
a toolbar of shortcut buttons acts on the focused card, because Streamlit allows each
shortcut on one button per page. Streamlit has no focus API: a small page script
(`st.html` with JavaScript, installed once) watches for the focused card's mark and moves
the browser's focus to that card's first button, so Enter presses it too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import duckdb
import streamlit as st

from dashboard.files import FileActionRefused, UnsafePath
from dashboard.ui import md
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

UNDO_DEPTH = 50
# What a card collapses to when its decision found it gone.
GONE = "gone"


class CardGone(FileActionRefused):
    """The card's subject changed since the page loaded (the daemon dropped a suggestion
    that a fix elsewhere made moot): nothing to decide. The card collapses and the focus
    moves on, as after a decision; a key must never stay stuck on it."""


def refusal(exc: Exception) -> str:
    """Why a decision was not stored, in words (a lock message means nothing to a reader)."""
    if isinstance(exc, StoreBusy):
        return (
            "the store is busy (the daemon or another program is writing); nothing was "
            "changed, try again in a moment"
        )
    if isinstance(exc, duckdb.Error):
        return "the store refused the change; nothing was changed"
    return str(exc)


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
    # The page's filters and position, asked on every run of the queue (a fragment run
    # does not rerun the page's code): a new value loads the cards again.
    context: Callable[[], Hashable] | None = None
    keys: Keys = field(default_factory=Keys)
    # Drawn when no card is left (e.g. what the daemon is doing); inside the fragment.
    empty: Callable[[], None] | None = None
    # Drawn above and under the cards, inside the fragment (counts, paging).
    header: Callable[[Sequence[T]], None] | None = None
    footer: Callable[[Sequence[T]], None] | None = None
    # A line of markdown above a card's buttons (its score, say): names in it through md().
    summary: Callable[[T], str] | None = None
    # One line standing for a decided card (its names, say).
    title: Callable[[T], str] | None = None
    # The buttons of one card, when they differ by card (labels that say what the
    # decision does to this card); their values are among `choices`, the toolbar's.
    card_choices: Callable[[T], Sequence[Choice]] | None = None
    # J past the last open card, K before the first: turn the page (the page's context
    # then changes and its cards load); each says whether there was a page to turn to.
    next_page: Callable[[], bool] | None = None
    previous_page: Callable[[], bool] | None = None
    # Called once the page is drawn: load what the next key is likely to need (the next
    # page of cards) while the reader looks at this one.
    preload: Callable[[Sequence[T]], None] | None = None

    # -- state, all in st.session_state under "q_<name>_..." -----------------------------

    def _get(self, what: str, default: object = None) -> object:
        return st.session_state.get(f"q_{self.name}_{what}", default)

    def _set(self, what: str, value: object) -> None:
        st.session_state[f"q_{self.name}_{what}"] = value

    def _cards(self) -> list[T]:
        return list(self._get("cards", []))  # type: ignore[call-overload]

    def _decided(self) -> dict[str, str]:
        return dict(self._get("decided", {}))  # type: ignore[call-overload]

    def _open_keys(self) -> list[str]:
        decided = self._decided()
        return [k for k in (self.key(c) for c in self._cards()) if k not in decided]

    def container_key(self, card_key: str) -> str:
        """The card's st.container key: the browser sees it as the CSS class st-key-<it>."""
        return f"qcard-{self.name}-{card_key}"

    def reload(self) -> None:
        """Load the cards again on the next run (after a change made elsewhere)."""
        self._set("stale", True)

    # -- actions (button callbacks: they run before the fragment reruns) -----------------

    def _focused_card(self) -> T | None:
        focus = self._get("focus")
        return next((c for c in self._cards() if self.key(c) == focus), None)

    def _move_focus(self, step: int) -> None:
        """To the next (step 1) or previous (-1) open card: decided ones are skipped (they
        take no key), and past either end of the page the page turns."""
        keys = [self.key(c) for c in self._cards()]
        decided = self._decided()
        focus = self._get("focus")
        at = keys.index(focus) if focus in keys else (-1 if step > 0 else len(keys))
        ahead = keys[at + 1 :] if step > 0 else keys[:at][::-1]
        target = next((k for k in ahead if k not in decided), None)
        if target is not None:
            self._set("focus", target)
            return
        turn = self.next_page if step > 0 else self.previous_page
        if turn is not None and turn():
            # The cards load on the next run: the focus goes to the first open card of
            # the next page, or to the one just before this page's first on the previous.
            self._set("focus", None)
            self._set("focus_edge", "first" if step > 0 else ("before", keys[0] if keys else None))

    def _focus_after_load(self, open_keys: list[str]) -> str | None:
        edge = self._get("focus_edge")
        self._set("focus_edge", None)
        if not open_keys:
            return None
        if isinstance(edge, tuple):
            keys = [self.key(c) for c in self._cards()]
            if edge[1] in keys:
                before = [k for k in keys[: keys.index(edge[1])] if k in open_keys]
                if before:
                    return before[-1]
            return open_keys[-1]
        return open_keys[0]

    def _decide(self, card: T, value: str) -> None:
        card_key = self.key(card)
        gone = False
        try:
            message = self.decide(card, value)
        except CardGone as exc:
            message, value, gone = f"not done: {exc}", GONE, True
        except REFUSALS as exc:
            self._set("toast", (f"not done: {refusal(exc)}", "⚠️"))
            return
        keys = [self.key(c) for c in self._cards()]
        decided = self._decided()
        decided[card_key] = value
        self._set("decided", decided)
        # The next open card takes the focus: after this one, else the last before it.
        # Set here in the callback, not when drawing: a key pressed again before the
        # redraw finishes (Streamlit cuts that run short) must act on the next card.
        if card_key in keys:
            i = keys.index(card_key)
            after = [k for k in keys[i + 1 :] if k not in decided]
            before = [k for k in keys[:i] if k not in decided]
            self._set("focus", (after or before[-1:] or [None])[0])
        if gone:
            self._set("toast", (message, "ℹ️"))
            return
        stack: list[tuple[T, str]] = list(self._get("undo", []))  # type: ignore[call-overload]
        stack.append((card, value))
        self._set("undo", stack[-UNDO_DEPTH:])
        self._set("toast", (message, "✅"))

    def _decide_focused(self, value: str) -> None:
        card = self._focused_card()
        if card is not None and self.key(card) not in self._decided():
            self._decide(card, value)

    def _undo_last(self) -> None:
        stack: list[tuple[T, str]] = list(self._get("undo", []))  # type: ignore[call-overload]
        if not stack or self.undo is None:
            self._set("toast", ("nothing to undo", "ℹ️"))
            return
        card, value = stack[-1]
        try:
            message = self.undo(card, value)
        except REFUSALS as exc:
            self._set("toast", (f"undo not done: {refusal(exc)}", "⚠️"))
            return
        self._set("undo", stack[:-1])
        card_key = self.key(card)
        decided = self._decided()
        if card_key in decided:
            decided.pop(card_key)
            self._set("decided", decided)
            self._set("focus", card_key)
        else:
            # Decided on an earlier page: load again so it shows (first, by its score).
            self._set("stale", True)
            self._set("focus", card_key)
        self._set("toast", (message, "↩️"))

    # -- drawing -------------------------------------------------------------------------

    def _toolbar(self, focused: T | None) -> None:
        cols = st.columns(len(self.choices) + 3)
        for col, choice in zip(cols, self.choices, strict=False):
            col.button(
                choice.label,
                key=f"q-{self.name}-{choice.value}",
                shortcut=choice.shortcut,
                help=md(choice.help) if choice.help else None,
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
            disabled=self.undo is None or not self._get("undo"),
            on_click=self._undo_last,
            width="stretch",
        )

    def _choices_of(self, card: T) -> Sequence[Choice]:
        return self.choices if self.card_choices is None else self.card_choices(card)

    def _mark(self, card_key: str, focused: bool, first: Choice) -> None:
        """A hidden mark in every card; the focused one's names the button to focus. The
        same element in every card, so moving the focus changes two marks, nothing else."""
        button = f"st-key-{first.value}-{card_key}"
        st.html(
            f'<span class="facelint-card" data-focused="{int(focused)}" '
            f'data-button="{button}"></span>',
            width="content",
        )

    def _card(self, card: T, focused: bool, decided: str | None) -> None:
        card_key = self.key(card)
        choices = self._choices_of(card)
        with st.container(border=True, key=self.container_key(card_key)):
            if decided is not None:
                label = next(
                    (c.label for c in choices if c.value == decided),
                    "no longer suggested" if decided == GONE else decided,
                )
                title = self.title(card) if self.title else card_key
                st.caption(md(f"✓ {label} — {title}"))
                return
            # Compact: the card's content on the left, its decisions stacked on the right,
            # so several cards fit on one screen.
            body, side = st.columns([6, 1], vertical_alignment="center")
            with side:
                self._mark(card_key, focused, choices[0])
                for choice in choices:
                    st.button(
                        choice.label,
                        key=f"{choice.value}-{card_key}",
                        help=md(choice.help) if choice.help else None,
                        on_click=self._decide,
                        args=(card, choice.value),
                        width="stretch",
                    )
                # Under the buttons, not above: a button's tooltip opens above it, and
                # the focused card's first button has the focus (and its tooltip) most
                # of the time, which covered the confidence.
                if self.summary is not None:
                    st.markdown(self.summary(card))
            with body:
                self.render_card(card, focused)

    @staticmethod
    def _install_focus_script() -> None:
        """Once per browser page: a MutationObserver that, whenever Streamlit redraws,
        outlines the card marked focused and focuses its first decision button, in the
        same frame as the card is drawn."""
        st.html(
            """<script>
(() => {
  if (window.__facelintFocus) return;
  window.__facelintFocus = true;
  let last = null;
  const apply = () => {
    const marks = document.querySelectorAll('.facelint-card[data-focused="1"]');
    const mark = marks[marks.length - 1];
    if (!mark) return;
    const card = mark.closest('[class*="st-key-qcard-"]');
    if (!card) return;
    const active = document.activeElement;
    if (card === last && card.contains(active)) return;
    const named = document.getElementsByClassName(mark.dataset.button || '')[0];
    const button = (named && named.querySelector('button:not([disabled])'))
      || card.querySelector('button:not([disabled])');
    if (!button) return;
    if (last && last !== card) last.style.outline = '';
    card.style.outline = '3px solid #ff4b4b';
    card.style.borderRadius = '0.5rem';
    last = card;
    // Never take the focus from someone typing in a box.
    if (active && ['INPUT', 'TEXTAREA'].includes(active.tagName)) return;
    button.focus({preventScroll: true});
    card.scrollIntoView({block: 'nearest'});
  };
  new MutationObserver(apply).observe(document.body, {childList: true, subtree: true,
                                                      attributes: true,
                                                      attributeFilter: ['data-focused']});
  apply();
})();
</script>""",
            unsafe_allow_javascript=True,
            width="content",
        )

    def _refresh(self) -> bool:
        """Load the page of cards when needed; False when it cannot be loaded now."""
        context = None if self.context is None else self.context()
        same = self._get("context", ()) == (context,) and not self._get("stale")
        if same and self._open_keys():
            return True
        cards = self.load()
        if cards is None:
            # Busy: keep what was shown (the loader said why).
            return bool(self._get("cards"))
        self._set("cards", list(cards))
        self._set("decided", {})
        self._set("context", (context,))
        self._set("stale", False)
        return True

    def render(self) -> None:
        """Draw the queue (a fragment: its buttons rerun only the queue)."""

        @st.fragment
        def queue() -> None:
            toast = self._get("toast")
            if toast is not None:
                self._set("toast", None)
                # Messages are plain text, names and paths in them shown as typed.
                st.toast(md(toast[0]), icon=toast[1])  # type: ignore[index]
            if not self._refresh():
                return
            cards = self._cards()
            decided = self._decided()
            open_keys = self._open_keys()
            if self._get("focus") not in open_keys:
                self._set("focus", self._focus_after_load(open_keys))
            focus = self._get("focus")
            if self.header is not None:
                self.header(cards)
            self._toolbar(self._focused_card())
            if not open_keys and self.empty is not None:
                self.empty()
            for card in cards:
                k = self.key(card)
                self._card(card, k == focus, decided.get(k))
            if self.footer is not None:
                self.footer(cards)
            self._install_focus_script()
            if self.preload is not None:
                self.preload(cards)

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
