"""Tabs against a real redis-server: open, raise the cap, freeze, read."""

from __future__ import annotations

from typing import Any

import pytest

from metering.errors import InvalidArgument
from metering.lifecycle import TabState
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from tests.metering.helpers import HOLD_MS, open_tab, tip


async def test_open_then_read(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=5_000)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.state, tab.cap_minor, tab.accrued_minor, tab.remaining_minor) == (
        TabState.OPEN,
        5_000,
        0,
        5_000,
    )
    assert tab.currency == "USD"
    assert tab.lines == ()
    assert tab.capture_before_ms == meter.clock.now_ms() + HOLD_MS


async def test_one_open_tab_per_customer_and_currency(meter: Meter) -> None:
    first = await open_tab(meter, "c1", currency="USD")
    again = await meter.tabs.open(
        customer="c1", currency="USD", cap_minor=1_000, auth_ref="a2", capture_before_ms=HOLD_MS
    )
    assert again.code is Code.TAB_ALREADY_OPEN
    assert again.tab_id == first.tab_id
    # Another currency, or another customer, is another credit line.
    await open_tab(meter, "c1", currency="EUR")
    await open_tab(meter, "c2", currency="USD")
    assert await meter.tabs.find_open("c1", "USD") == first.tab_id


async def test_open_is_idempotent_by_tab_id(meter: Meter) -> None:
    args: dict[str, Any] = {
        "customer": "c1",
        "currency": "USD",
        "cap_minor": 1_000,
        "auth_ref": "a1",
        "capture_before_ms": 9,
    }
    first = await meter.tabs.open(tab_id="tab_fixed", **args)
    again = await meter.tabs.open(tab_id="tab_fixed", **args)
    assert (first.code, again.code) == (Code.APPLIED, Code.DUPLICATE)
    other = await meter.tabs.open(
        tab_id="tab_fixed",
        customer="c1",
        currency="USD",
        cap_minor=2_000,
        auth_ref="a1",
        capture_before_ms=9,
    )
    assert other.code is Code.ID_REUSED


@pytest.mark.parametrize(
    ("cap", "code"),
    [
        (99, Code.CAP_OUT_OF_RANGE),
        (1_000_001, Code.CAP_OUT_OF_RANGE),
        (100.0, Code.INVALID_AMOUNT),
        (True, Code.INVALID_AMOUNT),
        ("500", Code.INVALID_AMOUNT),
        (-500, Code.INVALID_AMOUNT),
        (2**53, Code.INVALID_AMOUNT),
    ],
)
async def test_open_refuses_bad_caps(meter: Meter, cap: Any, code: Code) -> None:
    result = await meter.tabs.open(
        customer="c1",
        currency="USD",
        cap_minor=cap,
        auth_ref="a",
        capture_before_ms=1,
    )
    assert result.code is code
    assert await meter.tabs.find_open("c1", "USD") is None


async def test_open_refuses_unknown_currency_and_bad_ids(meter: Meter) -> None:
    result = await meter.tabs.open(
        customer="c1", currency="XXX", cap_minor=1_000, auth_ref="a", capture_before_ms=1
    )
    assert result.code is Code.INVALID_CURRENCY
    with pytest.raises(InvalidArgument, match="customer"):
        await meter.tabs.open(
            customer="c:1}", currency="USD", cap_minor=1_000, auth_ref="a", capture_before_ms=1
        )


async def test_raise_cap(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=1_000)
    raised = await meter.tabs.raise_cap(ref, cap_minor=3_000, auth_ref="a2", capture_before_ms=5)
    assert raised.code is Code.APPLIED
    assert raised.balance.cap_minor == 3_000
    again = await meter.tabs.raise_cap(ref, cap_minor=3_000, auth_ref="a2", capture_before_ms=5)
    assert again.code is Code.DUPLICATE
    lower = await meter.tabs.raise_cap(ref, cap_minor=2_000, auth_ref="a3", capture_before_ms=5)
    assert lower.code is Code.CAP_NOT_RAISED
    assert lower.balance.cap_minor == 3_000
    too_high = await meter.tabs.raise_cap(ref, cap_minor=10**7, auth_ref="a", capture_before_ms=5)
    assert too_high.code is Code.CAP_OUT_OF_RANGE
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.cap_minor, tab.auth_ref) == (3_000, "a2")


async def test_raise_cap_of_a_missing_tab(meter: Meter) -> None:
    result = await meter.tabs.raise_cap(
        TabRef("c1", "tab_nope"), cap_minor=2_000, auth_ref="a", capture_before_ms=1
    )
    assert result.code is Code.TAB_NOT_FOUND


async def test_freeze_stops_spending_and_frees_the_currency(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=1_000)
    assert (await meter.tip(ref, tip("t1", 300))).code is Code.APPLIED
    frozen = await meter.tabs.freeze(ref, "customer_ended")
    assert frozen.code is Code.APPLIED
    assert frozen.balance.state is TabState.SETTLING
    assert frozen.balance.accrued_minor == 300
    assert (await meter.tip(ref, tip("t2", 100))).code is Code.TAB_NOT_OPEN
    raised = await meter.tabs.raise_cap(ref, cap_minor=2_000, auth_ref="a", capture_before_ms=1)
    assert raised.code is Code.TAB_NOT_OPEN
    # Freezing again returns the original freeze.
    meter.clock.advance(5_000)  # type: ignore[attr-defined]
    again = await meter.tabs.freeze(ref, "merchant")
    assert again.code is Code.DUPLICATE
    assert (again.reason, again.frozen_at_ms) == ("customer_ended", frozen.frozen_at_ms)
    # The customer may open a new tab in the currency now.
    assert await meter.tabs.find_open("c1", "USD") is None
    await open_tab(meter, "c1")
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.state, tab.freeze_reason, tab.accrued_minor) == (
        TabState.SETTLING,
        "customer_ended",
        300,
    )


async def test_freeze_a_missing_tab(meter: Meter) -> None:
    assert (await meter.tabs.freeze(TabRef("c1", "tab_x"), "merchant")).code is Code.TAB_NOT_FOUND


async def test_read_a_missing_tab(meter: Meter) -> None:
    assert await meter.tabs.read(TabRef("c1", "tab_x")) is None


async def test_opening_indexes_the_tab_for_the_sweeper(meter: Meter) -> None:
    from metering import keys

    ref = await open_tab(meter, "c7")
    index = keys.tab_index(keys.tab_index_shard("c7"))
    members = await meter.store.client.zrange(index, 0, -1)
    assert keys.tab_index_member("c7", ref.tab_id).encode() in members
