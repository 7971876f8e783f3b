"""Every refused operation leaves Redis byte-for-byte unchanged (DUMP of every key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from metering.clock import FakeClock
from metering.limits import Limits
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.store import Store
from tests.metering.helpers import open_tab, tip
from tests.metering.snapshot import snapshot

Action = Callable[[Meter, TabRef, TabRef], Awaitable[Any]]


async def _setup(store: Store, clock: FakeClock) -> tuple[Meter, TabRef, TabRef]:
    meter = Meter(store, clock=clock, limits=Limits(tab_lines_max=3))
    open_ref = await open_tab(meter, "c1", cap_minor=1_000)
    await meter.tip(open_ref, tip("applied", 400))
    frozen_ref = await open_tab(meter, "c2", cap_minor=1_000)
    await meter.tabs.freeze(frozen_ref, "merchant")
    return meter, open_ref, frozen_ref


REFUSALS: dict[str, tuple[Action, Code]] = {
    "float amount": (lambda m, o, f: m.tip(o, tip("t", 1.5)), Code.INVALID_AMOUNT),
    "integral float": (lambda m, o, f: m.tip(o, tip("t", 100.0)), Code.INVALID_AMOUNT),
    "bool amount": (lambda m, o, f: m.tip(o, tip("t", True)), Code.INVALID_AMOUNT),
    "string amount": (lambda m, o, f: m.tip(o, tip("t", "100")), Code.INVALID_AMOUNT),
    "negative amount": (lambda m, o, f: m.tip(o, tip("t", -100)), Code.INVALID_AMOUNT),
    "huge amount": (lambda m, o, f: m.tip(o, tip("t", 2**60)), Code.INVALID_AMOUNT),
    "above max tip": (lambda m, o, f: m.tip(o, tip("t", 100_001)), Code.AMOUNT_OUT_OF_RANGE),
    "bad room": (lambda m, o, f: m.tip(o, tip("t", 100, room="x}")), Code.INVALID_ID),
    "bad currency": (lambda m, o, f: m.tip(o, tip("t", 1, currency="usd")), Code.INVALID_CURRENCY),
    "wrong currency": (
        lambda m, o, f: m.tip(o, tip("t", 1, currency="EUR")),
        Code.CURRENCY_MISMATCH,
    ),
    "over cap": (lambda m, o, f: m.tip(o, tip("t", 601)), Code.OVER_CAP),
    "id reused": (lambda m, o, f: m.tip(o, tip("applied", 401)), Code.ID_REUSED),
    "duplicate": (lambda m, o, f: m.tip(o, tip("applied", 400)), Code.DUPLICATE),
    "frozen tab": (lambda m, o, f: m.tip(f, tip("t", 100)), Code.TAB_NOT_OPEN),
    "missing tab": (lambda m, o, f: m.tip(TabRef("c1", "tab_none"), tip("t")), Code.TAB_NOT_FOUND),
    "cap lowered": (
        lambda m, o, f: m.tabs.raise_cap(o, cap_minor=500, auth_ref="a", capture_before_ms=1),
        Code.CAP_NOT_RAISED,
    ),
    "cap too high": (
        lambda m, o, f: m.tabs.raise_cap(o, cap_minor=2**40, auth_ref="a", capture_before_ms=1),
        Code.CAP_OUT_OF_RANGE,
    ),
    "raise frozen": (
        lambda m, o, f: m.tabs.raise_cap(f, cap_minor=5_000, auth_ref="a", capture_before_ms=1),
        Code.TAB_NOT_OPEN,
    ),
    "second open tab": (
        lambda m, o, f: m.tabs.open(
            customer="c1", currency="USD", cap_minor=1_000, auth_ref="a", capture_before_ms=1
        ),
        Code.TAB_ALREADY_OPEN,
    ),
    "open float cap": (
        lambda m, o, f: m.tabs.open(
            customer="c9",
            currency="USD",
            cap_minor=cast(Any, 1e3),
            auth_ref="a",
            capture_before_ms=1,
        ),
        Code.INVALID_AMOUNT,
    ),
    "refreeze": (lambda m, o, f: m.tabs.freeze(f, "idle"), Code.DUPLICATE),
}


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_a_refusal_changes_nothing(store: Store, clock: FakeClock, name: str) -> None:
    meter, open_ref, frozen_ref = await _setup(store, clock)
    action, expected = REFUSALS[name]
    before = await snapshot(store)
    clock.advance(1_000)
    result = await action(meter, open_ref, frozen_ref)
    assert result.code is expected
    assert await snapshot(store) == before


async def test_lines_full_changes_nothing(store: Store, clock: FakeClock) -> None:
    meter, open_ref, _ = await _setup(store, clock)
    await meter.tip(open_ref, tip("a2", 1))
    await meter.tip(open_ref, tip("a3", 1))
    before = await snapshot(store)
    assert (await meter.tip(open_ref, tip("a4", 1))).code is Code.LINES_FULL
    assert await snapshot(store) == before
