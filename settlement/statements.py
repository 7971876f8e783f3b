"""Itemized statements: what a tab's one capture is made of, and who earns what from it.

A statement is computed from the tab's lines, which cannot change once the tab is frozen, so it
is the same whenever it is computed: before the capture (the worker derives the models' credits
from it) and after (support reads it). It groups the lines the way a customer reads a bill:

- one ``tip`` line per model: how many tips, their sum, the model's share;
- one ``session`` line per model and per-minute rate: the seconds billed, their price;
- one ``purchase`` line per catalog purchase (a request or an unlock), with its item and its
  state; a voided request reads 0 (``voided_minor`` tells what it was) and is never captured.

Invariant (checked, :class:`~settlement.errors.StatementMismatch` otherwise): the lines add up
to the accrued amount, which is the amount captured; the models' shares plus the platform's
share add up to the same amount, exactly, in integer minor units.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from metering.keys import check_id
from metering.lifecycle import TabState
from metering.outcomes import Line, Tab, TabRef
from metering.store import Store
from settlement import scripts
from settlement.errors import StatementMismatch
from settlement.scripts import SettlementRecord


@dataclass(frozen=True, slots=True)
class StatementLine:
    """One line of a statement: a model's tips, or a model's seconds at one rate."""

    kind: str  # "tip", "session" or "purchase"
    room: str
    amount_minor: int
    share_minor: int
    count: int = 0  # tips (kind "tip") or session lines (kind "session") grouped here
    seconds: int = 0
    rate_per_minute_minor: int = 0
    #: Kind "purchase" only: the purchase id, the item, its kind, the purchase's state and,
    #: once voided, the amount it had (docs/purchases.md).
    purchase_id: str = ""
    item_id: str = ""
    item_name: str = ""
    item_kind: str = ""
    state: str = ""
    voided_minor: int = 0
    #: What a member's allowance did for the lines grouped here: the seconds its free
    #: allowance covered (delivered, charged 0) and what it saved, free seconds and discounts
    #: together (docs/subscriptions.md, "Allowances").
    covered_seconds: int = 0
    saved_minor: int = 0


@dataclass(frozen=True, slots=True)
class Statement:
    """A tab's itemized statement and how its settlement ended (if it has).

    ``total_minor`` is the sum of the lines and equals the tab's accrued amount; once the tab is
    settled it equals ``captured_minor`` too.
    """

    ref: TabRef
    currency: str
    state: TabState
    total_minor: int
    lines: tuple[StatementLine, ...]
    model_shares: tuple[tuple[str, int], ...]  # (room, share) sorted by room
    platform_minor: int
    freeze_reason: str = ""
    outcome: str = ""
    capture_id: str = ""
    captured_minor: int = 0
    settled_at_ms: int = 0
    decline_reason: str = ""
    retryable: bool = False


_KIND_ORDER = {"tip": 0, "purchase": 1, "session": 2}


def itemize(lines: Iterable[Line]) -> tuple[tuple[StatementLine, ...], tuple[tuple[str, int], ...]]:
    """Group a tab's lines into statement lines, and sum each model's share.

    Tips group per room; session lines per room and rate; each purchase is a line of its own.
    Order: by room, tips first, then purchases in the order they were bought, then sessions by
    rate — stable, so a statement reads the same every time.
    """
    groups: dict[tuple[str, str, int], list[Line]] = {}
    shares: dict[str, int] = {}
    for line in lines:
        # A purchase's "rate" slot holds its sequence number: one group per purchase, in order.
        rate = line.rate_per_minute_minor if line.kind == "session" else 0
        if line.kind == "purchase":
            rate = line.seq
        groups.setdefault((line.room, line.kind, rate), []).append(line)
        shares[line.room] = shares.get(line.room, 0) + line.share_minor
    items = []
    for (room, kind, rate), group in sorted(
        groups.items(), key=lambda kv: (kv[0][0], _KIND_ORDER[kv[0][1]], kv[0][2])
    ):
        if kind == "purchase":
            [line] = group
            items.append(
                StatementLine(
                    kind=kind,
                    room=room,
                    amount_minor=line.amount_minor,
                    share_minor=line.share_minor,
                    count=1,
                    purchase_id=line.line_id.removeprefix("buy:"),
                    item_id=line.item_id,
                    item_name=line.item_name,
                    item_kind=line.item_kind,
                    state=line.state,
                    voided_minor=line.voided_minor,
                )
            )
            continue
        items.append(
            StatementLine(
                kind=kind,
                room=room,
                amount_minor=sum(line.amount_minor for line in group),
                share_minor=sum(line.share_minor for line in group),
                count=len(group),
                seconds=sum(line.seconds for line in group),
                rate_per_minute_minor=rate,
                covered_seconds=sum(line.covered_s for line in group),
                saved_minor=sum(line.saved_minor for line in group),
            )
        )
    return tuple(items), tuple(sorted(shares.items()))


def build_statement(tab: Tab, record: SettlementRecord) -> Statement:
    """The statement of ``tab``; raise StatementMismatch if its lines do not explain it."""
    items, shares = itemize(tab.lines)
    total = sum(item.amount_minor for item in items)
    share_total = sum(share for _, share in shares)
    if total != tab.accrued_minor or not 0 <= share_total <= total:
        raise StatementMismatch(
            f"tab {tab.ref.customer}/{tab.ref.tab_id}: lines sum to {total}, shares to "
            f"{share_total}, accrued is {tab.accrued_minor}"
        )
    if record.amount_minor is not None and record.amount_minor != total:
        raise StatementMismatch(
            f"tab {tab.ref.customer}/{tab.ref.tab_id}: settling {record.amount_minor}, "
            f"lines sum to {total}"
        )
    return Statement(
        ref=tab.ref,
        currency=tab.currency,
        state=tab.state,
        total_minor=total,
        lines=items,
        model_shares=shares,
        platform_minor=total - share_total,
        freeze_reason=tab.freeze_reason,
        outcome=record.outcome.value if record.outcome is not None else "",
        capture_id=record.capture_id,
        captured_minor=record.captured_minor,
        settled_at_ms=record.outcome_at_ms,
        decline_reason=record.decline_reason,
        retryable=record.retryable,
    )


async def read_statement(store: Store, ref: TabRef) -> Statement | None:
    """Read ``ref``'s itemized statement (any state; final once the tab has an outcome).

    None when there is no such tab. Raises :class:`metering.errors.InvalidArgument` for a
    malformed ref, :class:`metering.errors.StoreUnavailable` when Redis cannot be reached.
    """
    check_id("customer", ref.customer)
    check_id("tab_id", ref.tab_id)
    found = await scripts.read_settlement(store, ref)
    if found is None:
        return None
    tab, record = found
    return build_statement(tab, record)


def allowance_fields(line: Line | StatementLine) -> dict[str, Any]:
    """What a member's allowance did on a line, only where it did something: the session
    seconds it covered (``covered_seconds``) and what it saved (``saved_minor``)."""
    if isinstance(line, StatementLine):
        covered, saved = line.covered_seconds, line.saved_minor
    else:
        covered, saved = line.covered_s, line.saved_minor
    if not (covered or saved):
        return {}
    if line.kind == "session":
        return {"covered_seconds": covered, "saved_minor": saved}
    return {"saved_minor": saved}


def kind_fields(line: Line | StatementLine) -> dict[str, Any]:
    """The JSON fields only a line of its kind has: a session's seconds and rate, a purchase's
    item and state (and, on a statement line, its purchase id); none for a tip; and, on a
    member's line, what the allowance covered (:func:`allowance_fields`). The tab's lines and
    the statement's lines read the same way (docs/http-api.md)."""
    if line.kind == "session":
        return {
            "seconds": line.seconds,
            "rate_per_minute_minor": line.rate_per_minute_minor,
            **allowance_fields(line),
        }
    if line.kind != "purchase":
        return allowance_fields(line)
    purchase_id = {"purchase_id": line.purchase_id} if isinstance(line, StatementLine) else {}
    return {
        **purchase_id,
        "item_id": line.item_id,
        "item_name": line.item_name,
        "item_kind": line.item_kind,
        "state": line.state,
        "voided_minor": line.voided_minor,
    }


def statement_data(statement: Statement) -> dict[str, Any]:
    """The statement as JSON-ready data (webhook payloads, the HTTP API): integers and text."""
    return {
        "customer": statement.ref.customer,
        "tab_id": statement.ref.tab_id,
        "currency": statement.currency,
        "state": statement.state.value,
        "outcome": statement.outcome,
        "freeze_reason": statement.freeze_reason,
        "total_minor": statement.total_minor,
        "captured_minor": statement.captured_minor,
        "capture_id": statement.capture_id,
        "settled_at_ms": statement.settled_at_ms,
        "decline_reason": statement.decline_reason,
        "retryable": statement.retryable,
        "platform_minor": statement.platform_minor,
        "model_shares": [
            {"room": room, "share_minor": share} for room, share in statement.model_shares
        ],
        "lines": [
            {
                "kind": line.kind,
                "room": line.room,
                "count": line.count,
                "amount_minor": line.amount_minor,
                "share_minor": line.share_minor,
                **kind_fields(line),
            }
            for line in statement.lines
        ],
    }
