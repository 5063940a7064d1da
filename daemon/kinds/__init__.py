"""Suggestion kinds: one module each (daemon/kinds/<kind>.py), the statistics they share
(daemon/kinds/stats.py) and the registry that runs them (daemon/kinds/registry.py).

Adding a kind: a member of `Kind` (with its `Rules`) in store/vocab.py, its module here,
its card in dashboard/cards/, and README's list of kinds.
"""

from daemon.kinds.registry import Suggestions, UnknownKind, find_suggestions, kind_of, kinds

__all__ = ["Suggestions", "UnknownKind", "find_suggestions", "kind_of", "kinds"]
