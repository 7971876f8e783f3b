"""Checks shared by the tests of the transition tables (tab, collection case, …)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TypeVar

S = TypeVar("S", bound=Hashable)
E = TypeVar("E", bound=Hashable)


def reachable(transitions: Mapping[tuple[S, E], S], start: S) -> set[S]:
    """Every state a table of ``(state, event) → state`` can lead to from ``start``."""
    reached = {start}
    frontier = [start]
    while frontier:
        state = frontier.pop()
        for (src, _), dst in transitions.items():
            if src == state and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    return reached
