"""The purchase lifecycle: one transition table for a catalog item bought against a tab.

A viewer buys an item from a model's catalog (docs/purchases.md). An **unlock** is ``granted``
the instant it is bought: the charge stands and the entitlement runs. A **request** is
``pending`` until the model acts on it: ``fulfilled`` when she marks it done, ``voided`` when
she declines it or when it was not done within its time (``expire``). Voiding is the
two-phase idea of a pending transfer voided before it is posted: the line's amount goes back to
zero and the cap is freed, in one atomic step, so a voided line is never captured.

A void is only possible while the tab is ``open`` (its accrued amount may still move). Once the
tab is frozen for settlement, a declined or expired request is given back by a refund after
the capture instead (``refund``, recorded by the refunds flow).

The Lua scripts do not hard-code these states: each wrapper passes the source states and the
target state of its event, read from :data:`TRANSITIONS`, so this table is the only
definition. The table in ``docs/purchases.md`` is generated from it by :func:`markdown_table`
(a test keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Final


class ItemKind(StrEnum):
    """What a catalog item is."""

    REQUEST = "request"  # the model performs something; she may decline it
    UNLOCK = "unlock"  # an entitlement granted at once for a while (HD, a channel, moderator)


class PurchaseState(StrEnum):
    """Where a purchase line is in its life (``new`` only before it exists)."""

    NEW = "new"
    PENDING = "pending"
    GRANTED = "granted"
    FULFILLED = "fulfilled"
    VOIDED = "voided"
    REFUNDED = "refunded"


class PurchaseEvent(StrEnum):
    """What can happen to a purchase."""

    BUY_REQUEST = "buy_request"  # a request is charged against the cap and queued
    BUY_UNLOCK = "buy_unlock"  # an unlock is charged against the cap and granted
    FULFIL = "fulfil"  # the model marked the request done
    DECLINE = "decline"  # the model declined the request while the tab was open
    EXPIRE = "expire"  # the request was not done in time while the tab was open
    REFUND = "refund"  # declined or expired after the tab froze: refunded after the capture


TRANSITIONS: Final[Mapping[tuple[PurchaseState, PurchaseEvent], PurchaseState]] = {
    (PurchaseState.NEW, PurchaseEvent.BUY_REQUEST): PurchaseState.PENDING,
    (PurchaseState.NEW, PurchaseEvent.BUY_UNLOCK): PurchaseState.GRANTED,
    (PurchaseState.PENDING, PurchaseEvent.FULFIL): PurchaseState.FULFILLED,
    (PurchaseState.PENDING, PurchaseEvent.DECLINE): PurchaseState.VOIDED,
    (PurchaseState.PENDING, PurchaseEvent.EXPIRE): PurchaseState.VOIDED,
    (PurchaseState.PENDING, PurchaseEvent.REFUND): PurchaseState.REFUNDED,
}

#: What each event does to the money, for the docs' table.
EFFECTS: Final[Mapping[PurchaseEvent, str]] = {
    PurchaseEvent.BUY_REQUEST: "line charged against the cap (model's share on the line)",
    PurchaseEvent.BUY_UNLOCK: "line charged against the cap; entitlement until now + duration",
    PurchaseEvent.FULFIL: "none (the line stands and is captured with the tab)",
    PurchaseEvent.DECLINE: "line voided: amount and share to 0, cap freed; never captured",
    PurchaseEvent.EXPIRE: "line voided: amount and share to 0, cap freed; never captured",
    PurchaseEvent.REFUND: "line captured with the tab, then refunded through the refunds flow",
}

#: States from which no event leads anywhere.
TERMINAL: Final = frozenset(
    state for state in PurchaseState if not any(src == state for src, _ in TRANSITIONS)
)


def next_state(state: PurchaseState, event: PurchaseEvent) -> PurchaseState | None:
    """Return the state ``event`` takes ``state`` to, or ``None`` if it is not allowed there."""
    return TRANSITIONS.get((state, event))


def sources(event: PurchaseEvent) -> frozenset[PurchaseState]:
    """Return the states in which ``event`` is allowed."""
    return frozenset(src for src, ev in TRANSITIONS if ev == event)


def target(event: PurchaseEvent) -> PurchaseState:
    """Return the single state ``event`` leads to (every event here has exactly one)."""
    targets = {dst for (_, ev), dst in TRANSITIONS.items() if ev == event}
    if len(targets) != 1:
        raise ValueError(f"{event} leads to {sorted(targets)}, not to one state")
    return next(iter(targets))


def bought_state(kind: ItemKind) -> PurchaseState:
    """The state a purchase of ``kind`` starts in."""
    return target(
        PurchaseEvent.BUY_UNLOCK if kind is ItemKind.UNLOCK else PurchaseEvent.BUY_REQUEST
    )


def markdown_table() -> str:
    """Render the transition table as a Markdown table (for ``docs/purchases.md``)."""
    rows = ["| from | event | to | money |", "|---|---|---|---|"]
    for (src, event), dst in TRANSITIONS.items():
        rows.append(f"| `{src}` | `{event}` | `{dst}` | {EFFECTS[event]} |")
    rows.append("")
    rows.append("Terminal states: " + ", ".join(f"`{s}`" for s in sorted(TERMINAL)) + ".")
    return "\n".join(rows) + "\n"
