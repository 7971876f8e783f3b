"""Small builders shared by the money core's tests."""

from __future__ import annotations

from typing import Any

from metering.clock import FakeClock
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.purchase_lifecycle import ItemKind
from metering.purchases import PurchaseRequest
from metering.tips import TipRequest

HOLD_MS = 7 * 24 * 3600 * 1000


async def open_tab(
    meter: Meter, customer: str = "c1", cap_minor: int = 5_000, currency: str = "USD"
) -> TabRef:
    """Open a tab and return its ref; fail the test if it does not open."""
    clock = meter.clock
    now = clock.now_ms() if isinstance(clock, FakeClock) else 0
    result = await meter.tabs.open(
        customer=customer,
        currency=currency,
        cap_minor=cap_minor,
        auth_ref=f"auth-{customer}-{currency}",
        capture_before_ms=now + HOLD_MS,
    )
    assert result.code is Code.APPLIED, result
    return TabRef(customer, result.tab_id)


def tip(tip_id: str, amount: Any = 100, room: str = "room1", **fields: Any) -> TipRequest:
    """A tip request in USD (fields may be anything, as from the wire)."""
    return TipRequest(
        tip_id=tip_id,
        room=room,
        amount_minor=amount,
        currency=fields.pop("currency", "USD"),
        **fields,
    )


MINUTE_MS = 60_000


def buy(purchase_id: str, amount: Any = 300, **fields: Any) -> PurchaseRequest:
    """A request for "dance" in USD, done within a minute (fields may override anything)."""
    values: dict[str, Any] = {
        "purchase_id": purchase_id,
        "room": "room1",
        "item_id": "dance",
        "item_name": "Dance",
        "item_kind": ItemKind.REQUEST.value,
        "amount_minor": amount,
        "currency": "USD",
        "duration_ms": MINUTE_MS,
        "viewer_name": "alice",
        "message": "please",
    }
    values.update(fields)
    return PurchaseRequest(**values)
