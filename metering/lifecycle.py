"""The tab lifecycle: one transition table, applied in one place.

A tab is a Post Pay credit line. It is ``open`` while the customer spends against the cap; it
is frozen into ``settling`` by a settlement trigger (cap reached, customer ends, merchant
settles, idle, hold about to expire); the single capture then takes it to ``settled``, or a
decline to ``failed``, from where collection ends in ``collected`` or ``written_off``. A tab
with nothing accrued is ``voided`` (the hold is released, nothing captured). A hold that lapses
before its capture makes the tab ``expired``, which collection then resolves like a decline.

The Lua scripts do not hard-code states: each wrapper passes the source states and the target
state of its event, read from :data:`TRANSITIONS`, so this table is the only definition. The
diagram in ``docs/lifecycle.md`` is generated from it by :func:`mermaid` (a test keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class TabState(StrEnum):
    """Where a tab is in its life."""

    OPEN = "open"
    SETTLING = "settling"
    SETTLED = "settled"
    FAILED = "failed"
    COLLECTED = "collected"
    WRITTEN_OFF = "written_off"
    VOIDED = "voided"
    EXPIRED = "expired"


class TabEvent(StrEnum):
    """What can happen to a tab."""

    SPEND = "spend"  # a tip or a billed second is applied
    RAISE_CAP = "raise_cap"  # the hold is raised (incremental authorization)
    FREEZE = "freeze"  # a settlement trigger fired: no further spend
    CAPTURE = "capture"  # the single capture succeeded
    DECLINE = "decline"  # the capture was declined
    VOID = "void"  # nothing to capture: the hold is released
    EXPIRE = "expire"  # the hold lapsed before it was captured
    COLLECT = "collect"  # a collection case recovered the amount
    WRITE_OFF = "write_off"  # the amount is given up, by an explicit decision


class FreezeReason(StrEnum):
    """Which settlement trigger froze a tab (recorded with the freeze, in the same step)."""

    CAP_REACHED = "cap_reached"  # less than the smallest tip remained, and no raise followed
    CUSTOMER_ENDED = "customer_ended"  # the viewer ended their Post Pay session
    MERCHANT = "merchant"  # the cam-site backend asked to settle now
    IDLE = "idle"  # nothing was spent for the idle timeout
    HOLD_EXPIRING = "hold_expiring"  # the hold expires within the safety margin


TRANSITIONS: Final[Mapping[tuple[TabState, TabEvent], TabState]] = {
    (TabState.OPEN, TabEvent.SPEND): TabState.OPEN,
    (TabState.OPEN, TabEvent.RAISE_CAP): TabState.OPEN,
    (TabState.OPEN, TabEvent.FREEZE): TabState.SETTLING,
    (TabState.OPEN, TabEvent.EXPIRE): TabState.EXPIRED,
    (TabState.SETTLING, TabEvent.CAPTURE): TabState.SETTLED,
    (TabState.SETTLING, TabEvent.DECLINE): TabState.FAILED,
    (TabState.SETTLING, TabEvent.VOID): TabState.VOIDED,
    (TabState.SETTLING, TabEvent.EXPIRE): TabState.EXPIRED,
    (TabState.FAILED, TabEvent.COLLECT): TabState.COLLECTED,
    (TabState.FAILED, TabEvent.WRITE_OFF): TabState.WRITTEN_OFF,
    (TabState.EXPIRED, TabEvent.COLLECT): TabState.COLLECTED,
    (TabState.EXPIRED, TabEvent.WRITE_OFF): TabState.WRITTEN_OFF,
}

#: States from which no event leads anywhere.
TERMINAL: Final = frozenset(
    state for state in TabState if not any(src == state for src, _ in TRANSITIONS)
)


def next_state(state: TabState, event: TabEvent) -> TabState | None:
    """Return the state ``event`` takes ``state`` to, or ``None`` if it is not allowed there."""
    return TRANSITIONS.get((state, event))


def sources(event: TabEvent) -> frozenset[TabState]:
    """Return the states in which ``event`` is allowed."""
    return frozenset(src for src, ev in TRANSITIONS if ev == event)


def target(event: TabEvent) -> TabState:
    """Return the single state ``event`` leads to (every event here has exactly one)."""
    targets = {dst for (_, ev), dst in TRANSITIONS.items() if ev == event}
    if len(targets) != 1:
        raise ValueError(f"{event} leads to {sorted(targets)}, not to one state")
    return next(iter(targets))


def lua_states(states: frozenset[TabState]) -> str:
    """Encode a set of states for a script's ARGV: comma-separated, wrapped in commas.

    The scripts test membership with ``string.find(arg, "," .. state .. ",", 1, true)``.
    """
    return "," + ",".join(sorted(states)) + ","


#: The states a tab may be spent in, encoded for a script's ARGV (tips and billed seconds).
SPENDABLE_LUA: Final = lua_states(sources(TabEvent.SPEND))


def mermaid() -> str:
    """Render the transition table as a Mermaid state diagram (for ``docs/lifecycle.md``)."""
    lines = ["stateDiagram-v2", f"    [*] --> {TabState.OPEN}"]
    for (src, event), dst in TRANSITIONS.items():
        lines.append(f"    {src} --> {dst}: {event}")
    lines.extend(f"    {state} --> [*]" for state in sorted(TERMINAL))
    return "\n".join(lines) + "\n"
