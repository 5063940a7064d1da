"""Finding a suggestion kind's module by its `Kind` value: the daemon's kinds
(daemon/kinds/<kind>.py, holding `KIND`) and the dashboard's cards (dashboard/cards/<kind>.py,
holding `CARD`) are found the same way, and fail the same way — loudly, naming the kind."""

from __future__ import annotations

import importlib
from typing import TypeVar

from store.vocab import Kind

T = TypeVar("T")


def kind_module(
    kind: str, package: str, attribute: str, expected: type[T], error: type[LookupError]
) -> T:
    """`package.<kind>`'s `attribute`, an `expected` for that very kind; `error` naming the
    kind when the vocabulary does not know it, its module is missing, or holds no such
    object."""
    try:
        member = Kind(kind)
    except ValueError:
        known = ", ".join(Kind)
        raise error(f"unknown suggestion kind {kind!r}: one of {known}") from None
    name = f"{package}.{member.value}"
    where = name.replace(".", "/") + ".py"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise error(f"suggestion kind {kind!r} has no module {where}") from None
    found = getattr(module, attribute, None)
    if not isinstance(found, expected) or getattr(found, "kind", None) != member:
        raise error(f"{where} holds no {attribute} for {kind!r}")
    return found
