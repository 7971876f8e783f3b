"""Tips against a real redis-server: applied at most once, never past the cap, itemized."""

from __future__ import annotations

from typing import Any

import pytest

from metering import keys
from metering.clock import FakeClock
from metering.limits import Limits
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.store import Store
from tests.metering.helpers import open_tab, tip


async def test_a_tip_is_applied_itemized_and_reaches_the_room(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=5_000)
    result = await meter.tip(ref, tip("t1", 250, viewer_name="alice", message="hi there"))
    assert result.code is Code.APPLIED
    assert (result.balance.accrued_minor, result.balance.remaining_minor) == (250, 4_750)
    assert (result.seq, result.share_minor) == (1, 150)  # the default payout is 60 %

    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 250
    [line] = tab.lines
    assert (line.kind, line.line_id, line.room, line.amount_minor) == (
        "tip",
        "tip:t1",
        "room1",
        250,
    )
    assert (line.payout_bp, line.share_minor) == (6_000, 150)

    page = await meter.rooms.read("room1")
    [event] = page.events
    assert event.event_type == "tip"
    assert event.data == {
        "type": "tip",
        "tip_id": "t1",
        "room": "room1",
        "amount": 250,
        "currency": "USD",
        "share": 150,
        "name": "alice",
        "anon": False,
        "message": "hi there",
        "at": meter.clock.now_ms(),
    }
    assert await meter.rooms.earnings("room1") == {"accrued:USD": 150}
    # The outbox is empty once the event is relayed.
    assert await meter.store.client.xlen(keys.outbox("c1")) == 0


async def test_a_retry_returns_the_original_result_and_applies_nothing(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=5_000)
    first = await meter.tip(ref, tip("t1", 100))
    await meter.tip(ref, tip("t2", 200))
    retry = await meter.tip(ref, tip("t1", 100))
    assert retry.code is Code.DUPLICATE
    assert (retry.seq, retry.share_minor, retry.balance) == (
        first.seq,
        first.share_minor,
        first.balance,
    )
    assert retry.event is None
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 300
    assert len(tab.lines) == 2
    assert len((await meter.rooms.read("room1")).events) == 2


@pytest.mark.parametrize("change", [{"amount": 101}, {"room": "room2"}])
async def test_the_same_id_for_another_tip_is_refused(meter: Meter, change: dict[str, Any]) -> None:
    ref = await open_tab(meter)
    await meter.tip(ref, tip("t1", 100))
    fields: dict[str, Any] = {"amount": 100, "room": "room1", **change}
    result = await meter.tip(ref, tip("t1", **fields))
    assert result.code is Code.ID_REUSED
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 100


async def test_the_cap_is_reached_exactly_and_never_passed(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=1_000)
    assert (await meter.tip(ref, tip("a", 600))).code is Code.APPLIED
    over = await meter.tip(ref, tip("b", 401))
    assert over.code is Code.OVER_CAP
    assert over.balance.remaining_minor == 400
    assert (await meter.tip(ref, tip("c", 400))).balance.remaining_minor == 0
    assert (await meter.tip(ref, tip("d", 1))).code is Code.OVER_CAP
    # The refused id is not burnt: after a raise it can be applied.
    await meter.tabs.raise_cap(ref, cap_minor=2_000, auth_ref="a", capture_before_ms=1)
    assert (await meter.tip(ref, tip("b", 401))).code is Code.APPLIED


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"amount": 1.0}, Code.INVALID_AMOUNT),
        ({"amount": 100.5}, Code.INVALID_AMOUNT),
        ({"amount": float("nan")}, Code.INVALID_AMOUNT),
        ({"amount": True}, Code.INVALID_AMOUNT),
        ({"amount": "100"}, Code.INVALID_AMOUNT),
        ({"amount": None}, Code.INVALID_AMOUNT),
        ({"amount": -5}, Code.INVALID_AMOUNT),
        ({"amount": 0}, Code.INVALID_AMOUNT),
        ({"amount": 2**53}, Code.INVALID_AMOUNT),
        ({"amount": 100_001}, Code.AMOUNT_OUT_OF_RANGE),
        ({"currency": "EURO"}, Code.INVALID_CURRENCY),
        ({"room": "a:b"}, Code.INVALID_ID),
        ({"room": "{r:x}"}, Code.INVALID_ID),
        ({"message": "x" * 256}, Code.INVALID_FIELD),
        ({"message": "line\nbreak"}, Code.INVALID_FIELD),
        ({"viewer_name": 5}, Code.INVALID_FIELD),
        ({"anonymous": 1}, Code.INVALID_FIELD),
    ],
)
async def test_bad_input_is_refused_with_a_code(
    meter: Meter, fields: dict[str, Any], code: Code
) -> None:
    ref = await open_tab(meter)
    amount = fields.pop("amount", 100)
    result = await meter.tip(ref, tip("t1", amount, **fields))
    assert result.code is code
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 0


async def test_a_bad_tip_id_is_refused(meter: Meter) -> None:
    ref = await open_tab(meter)
    assert (await meter.tip(ref, tip("", 100))).code is Code.INVALID_ID
    assert (await meter.tip(ref, tip("x" * 65, 100))).code is Code.INVALID_ID


async def test_currency_must_match_the_tab(meter: Meter) -> None:
    ref = await open_tab(meter, currency="EUR")
    assert (await meter.tip(ref, tip("t1", 100))).code is Code.CURRENCY_MISMATCH
    assert (await meter.tip(ref, tip("t1", 100, currency="EUR"))).code is Code.APPLIED


async def test_a_tip_to_a_missing_tab(meter: Meter) -> None:
    assert (await meter.tip(TabRef("c1", "tab_none"), tip("t1"))).code is Code.TAB_NOT_FOUND


async def test_lines_are_bounded(store: Store, clock: FakeClock) -> None:
    meter = Meter(store, clock=clock, limits=Limits(tab_lines_max=3))
    ref = await open_tab(meter)
    codes = [(await meter.tip(ref, tip(f"t{i}", 10))).code for i in range(4)]
    assert codes == [Code.APPLIED] * 3 + [Code.LINES_FULL]


async def test_anonymous_tips_do_not_carry_the_name(meter: Meter) -> None:
    ref = await open_tab(meter)
    await meter.tip(ref, tip("t1", 100, viewer_name="alice", anonymous=True))
    [event] = (await meter.rooms.read("room1")).events
    assert (event.data["name"], event.data["anon"]) == ("", True)


async def test_the_rooms_payout_rate_decides_the_share(meter: Meter) -> None:
    await meter.rooms.set_payout_bp("room9", 8_333)
    ref = await open_tab(meter)
    result = await meter.tip(ref, tip("t1", 999, room="room9"))
    assert result.share_minor == 999 * 8_333 // 10_000
    assert await meter.rooms.earnings("room9") == {"accrued:USD": result.share_minor}
    with pytest.raises(ValueError, match="payout_bp"):
        await meter.rooms.set_payout_bp("room9", 10_001)


async def test_relaying_twice_lands_once(meter: Meter) -> None:
    ref = await open_tab(meter)
    result = await meter.tips.apply(ref, tip("t1", 100))
    assert result.event is not None
    first = await meter.rooms.relay(result.event)
    second = await meter.rooms.relay(result.event)
    assert first is not None
    assert second is None
    assert len((await meter.rooms.read("room1")).events) == 1
    assert await meter.rooms.earnings("room1") == {"accrued:USD": 60}


async def test_what_a_crash_left_in_the_outbox_is_relayed_later(meter: Meter) -> None:
    ref = await open_tab(meter)
    # Applied, but the process "died" before relaying: the events wait in the outbox.
    for i in range(3):
        assert (await meter.tips.apply(ref, tip(f"t{i}", 100))).event is not None
    assert (await meter.rooms.read("room1")).events == []
    assert await meter.rooms.relay_pending("c1") == 3
    assert [e.data["tip_id"] for e in (await meter.rooms.read("room1")).events] == [
        "t0",
        "t1",
        "t2",
    ]
    assert await meter.rooms.relay_pending("c1") == 0


async def test_room_events_resume_from_a_cursor(meter: Meter) -> None:
    ref = await open_tab(meter)
    for i in range(5):
        await meter.tip(ref, tip(f"t{i}", 10))
    page = await meter.rooms.read("room1", count=2)
    assert [e.data["tip_id"] for e in page.events] == ["t0", "t1"]
    rest = await meter.rooms.read("room1", after=page.events[-1].event_id)
    assert [e.data["tip_id"] for e in rest.events] == ["t2", "t3", "t4"]
    assert not rest.gap
    assert await meter.rooms.latest_id("room1") == rest.events[-1].event_id
    assert (await meter.rooms.read("room1", after=rest.events[-1].event_id)).events == []
    with pytest.raises(ValueError, match="stream id"):
        await meter.rooms.read("room1", after="yesterday")


async def test_room_streams_are_bounded_and_report_gaps(store: Store, clock: FakeClock) -> None:
    meter = Meter(store, clock=clock, limits=Limits(room_events_max=100, tab_lines_max=1_000))
    ref = await open_tab(meter, cap_minor=100_000)
    first = await meter.tip(ref, tip("t0", 1))
    first_id = (await meter.rooms.read("room1")).events[0].event_id
    for i in range(1, 600):
        await meter.tip(ref, tip(f"t{i}", 1))
    length = await store.client.xlen(keys.room_events("room1"))
    assert 100 <= length < 600
    page = await meter.rooms.read("room1", after=first_id)
    assert page.gap
    assert first.code is Code.APPLIED


async def test_scripts_flushed_from_redis_are_loaded_again(meter: Meter) -> None:
    import asyncio

    refs = [await open_tab(meter, f"c{n}") for n in range(10)]
    await meter.store.client.script_flush()
    results = await asyncio.gather(*(meter.tip(ref, tip("t1", 100)) for ref in refs))
    assert {r.code for r in results} == {Code.APPLIED}


async def test_the_tab_is_marked_exhausted_when_less_than_a_tip_remains(
    store: Store, clock: FakeClock
) -> None:
    meter = Meter(store, clock=clock, limits=Limits(tip_min_minor=50))
    ref = await open_tab(meter, cap_minor=1_000)
    await meter.tip(ref, tip("a", 900))
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.exhausted_at_ms == 0
    clock.advance(10)
    await meter.tip(ref, tip("b", 60))
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.exhausted_at_ms == clock.now_ms()
    # Raising the cap takes the mark (and the pending cap_reached trigger) away.
    await meter.tabs.raise_cap(ref, cap_minor=2_000, auth_ref="a", capture_before_ms=1)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.exhausted_at_ms == 0
