"""Purchases against a real redis-server: charged like a tip, voided before settlement."""

from __future__ import annotations

import re
from pathlib import Path

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.purchase_lifecycle import (
    TRANSITIONS,
    PurchaseEvent,
    PurchaseState,
    markdown_table,
    next_state,
)
from tests.metering.helpers import MINUTE_MS, buy, open_tab


async def test_a_request_is_charged_pending_and_earns_nothing_until_fulfilled(
    meter: Meter,
) -> None:
    ref = await open_tab(meter, cap_minor=1_000)
    result = await meter.buy(ref, buy("p1"))
    assert result.code is Code.APPLIED
    assert result.state is PurchaseState.PENDING
    assert (result.balance.accrued_minor, result.share_minor) == (300, 180)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    [line] = tab.lines
    assert (line.kind, line.line_id, line.amount_minor, line.share_minor) == (
        "purchase",
        "buy:p1",
        300,
        180,
    )
    assert (line.item_id, line.item_name, line.item_kind, line.state) == (
        "dance",
        "Dance",
        "request",
        "pending",
    )
    assert await meter.rooms.earnings("room1") == {}

    done = await meter.fulfil("c1", "p1")
    assert (done.code, done.state) == (Code.APPLIED, PurchaseState.FULFILLED)
    assert await meter.rooms.earnings("room1") == {"accrued:USD": 180}
    again = await meter.fulfil("c1", "p1")
    assert (again.code, again.event) == (Code.DUPLICATE, None)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.lines[0].state == "fulfilled"
    assert tab.accrued_minor == 300
    page = await meter.rooms.read("room1")
    assert [e.event_type for e in page.events] == ["purchase", "purchase_fulfilled"]
    assert page.events[0].data["item_name"] == "Dance"
    # A fulfilled request can no longer be voided.
    late = await meter.void("c1", "p1", PurchaseEvent.DECLINE)
    assert late.code is Code.PURCHASE_NOT_PENDING


async def test_a_declined_request_is_voided_and_frees_the_cap(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=500)
    assert (await meter.buy(ref, buy("p1", 400))).code is Code.APPLIED
    assert (await meter.buy(ref, buy("p2", 400))).code is Code.OVER_CAP
    voided = await meter.void("c1", "p1", PurchaseEvent.DECLINE)
    assert (voided.code, voided.state, voided.voided_minor) == (
        Code.APPLIED,
        PurchaseState.VOIDED,
        400,
    )
    assert (voided.balance.accrued_minor, voided.balance.remaining_minor) == (0, 500)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    [line] = tab.lines
    assert (line.amount_minor, line.share_minor, line.voided_minor, line.state) == (
        0,
        0,
        400,
        "voided",
    )
    assert tab.accrued_minor == sum(line.amount_minor for line in tab.lines) == 0
    # Voiding again answers with the first void; fulfilling it is refused.
    assert (await meter.void("c1", "p1", PurchaseEvent.DECLINE)).code is Code.DUPLICATE
    assert (await meter.void("c1", "p1", PurchaseEvent.EXPIRE)).code is Code.DUPLICATE
    assert (await meter.fulfil("c1", "p1")).code is Code.PURCHASE_NOT_PENDING
    # The freed cap is spendable again; the retried purchase id is still the first one.
    assert (await meter.buy(ref, buy("p2", 400))).code is Code.APPLIED
    retried = await meter.buy(ref, buy("p1", 400))
    assert (retried.code, retried.state) == (Code.DUPLICATE, PurchaseState.VOIDED)
    assert await meter.rooms.earnings("room1") == {}


async def test_an_expiry_waits_for_the_deadline(meter: Meter, clock: FakeClock) -> None:
    ref = await open_tab(meter)
    await meter.buy(ref, buy("p1"))
    assert (await meter.void("c1", "p1", PurchaseEvent.EXPIRE)).code is Code.NOT_DUE
    clock.advance(MINUTE_MS)
    expired = await meter.void("c1", "p1", PurchaseEvent.EXPIRE)
    assert expired.code is Code.APPLIED
    view = await meter.purchases.read("c1", "p1")
    assert view is not None
    assert (view.state, view.reason) == (PurchaseState.VOIDED, "expire")


async def test_an_unlock_is_granted_at_once_and_cannot_be_voided(meter: Meter) -> None:
    ref = await open_tab(meter)
    result = await meter.buy(
        ref, buy("u1", 200, item_id="hd", item_name="HD", item_kind="unlock", duration_ms=5_000)
    )
    assert (result.code, result.state) == (Code.APPLIED, PurchaseState.GRANTED)
    assert result.until_ms == result.applied_at_ms + 5_000
    assert await meter.rooms.earnings("room1") == {"accrued:USD": 120}
    assert (await meter.void("c1", "u1", PurchaseEvent.DECLINE)).code is (Code.PURCHASE_NOT_PENDING)
    assert (await meter.fulfil("c1", "u1")).code is Code.PURCHASE_NOT_PENDING


async def test_a_frozen_tab_is_not_voided(meter: Meter) -> None:
    ref = await open_tab(meter)
    await meter.buy(ref, buy("p1"))
    await meter.tabs.freeze(ref, FreezeReason.MERCHANT)
    refused = await meter.void("c1", "p1", PurchaseEvent.DECLINE)
    assert refused.code is Code.TAB_NOT_OPEN
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 300
    # Fulfilling moves no money: still allowed after the freeze.
    assert (await meter.fulfil("c1", "p1")).code is Code.APPLIED


async def test_refusals_write_nothing(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=1_000)
    assert (await meter.buy(ref, buy("p1"))).code is Code.APPLIED
    cases = [
        (buy("p1", 301), Code.ID_REUSED),
        (buy("p1", item_id="other"), Code.ID_REUSED),
        (buy("bad id"), Code.INVALID_ID),
        (buy("p2", currency="usd"), Code.INVALID_CURRENCY),
        (buy("p2", 1.5), Code.INVALID_AMOUNT),
        (buy("p2", True), Code.INVALID_AMOUNT),
        (buy("p2", item_kind="gift"), Code.INVALID_KIND),
        (buy("p2", duration_ms=0), Code.INVALID_FIELD),
        (buy("p2", item_name=""), Code.INVALID_FIELD),
        (buy("p2", currency="EUR"), Code.CURRENCY_MISMATCH),
        (buy("p2", 800), Code.OVER_CAP),
    ]
    for request, code in cases:
        assert (await meter.buy(ref, request)).code is code, request
    missing = await meter.buy(TabRef("c1", "nope"), buy("p3"))
    assert missing.code is Code.TAB_NOT_FOUND
    assert (await meter.void("c1", "zz", PurchaseEvent.DECLINE)).code is Code.PURCHASE_NOT_FOUND
    assert (await meter.fulfil("c1", "zz")).code is Code.PURCHASE_NOT_FOUND
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.accrued_minor, len(tab.lines)) == (300, 1)


def test_the_lifecycle_table() -> None:
    assert next_state(PurchaseState.PENDING, PurchaseEvent.FULFIL) is PurchaseState.FULFILLED
    assert next_state(PurchaseState.VOIDED, PurchaseEvent.FULFIL) is None
    assert next_state(PurchaseState.GRANTED, PurchaseEvent.DECLINE) is None
    assert len(markdown_table().splitlines()) == len(TRANSITIONS) + 4


def test_the_docs_table_is_generated_from_the_lifecycle_table() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "purchases.md").read_text()
    found = re.search(r"<!-- purchase-table:start -->\n(.*?)<!-- purchase-table:end -->", doc, re.S)
    assert found is not None
    assert found[1] == markdown_table()
