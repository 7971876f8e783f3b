"""Sessions with a fake clock against a real redis-server: every billing rule and end reason."""

from __future__ import annotations

import pytest

from metering.clock import FakeClock
from metering.lifecycle import TabState
from metering.limits import Limits
from metering.meter import Meter
from metering.money import prorate_minor
from metering.outcomes import Code, TabRef
from metering.sessions import EndReason, Rate, SessionKind, SessionRef, TickResult
from metering.store import Store
from tests.metering.helpers import open_tab, tip

OWNER = "proc-a"


async def _start(
    meter: Meter, ref: TabRef, sid: str = "s1", room: str = "alice", kind: str = "private"
) -> SessionRef:
    result = await meter.sessions.start(
        ref, session_id=sid, room=room, kind=kind, currency="USD", owner=OWNER
    )
    assert result.code is Code.APPLIED, result
    return SessionRef(ref.customer, sid, ref.tab_id)


async def _tick(meter: Meter, *refs: SessionRef, owner: str = OWNER) -> list[TickResult]:
    return await meter.sessions.tick(owner, list(refs))


async def test_a_session_is_prepaid_second_by_second(meter: Meter, clock: FakeClock) -> None:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600)})
    ref = await open_tab(meter, cap_minor=100_000)
    session = await _start(meter, ref)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 10  # the first second, prepaid: 600 a minute is 10 a second
    [line] = tab.lines
    assert (line.kind, line.seconds, line.rate_per_minute_minor, line.amount_minor) == (
        "session",
        1,
        600,
        10,
    )
    for second in range(1, 60):
        clock.advance(1_000)
        [result] = await _tick(meter, session)
        assert (result.status, result.billed_s) == ("running", second + 1)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 600
    assert tab.balance.burn_minor_per_minute == 600


async def test_rounding_happens_once_over_the_whole_session(meter: Meter, clock: FakeClock) -> None:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(7)})
    ref = await open_tab(meter, cap_minor=100_000)
    session = await _start(meter, ref)
    for _ in range(599):
        clock.advance(1_000)
        await _tick(meter, session)
    view = await meter.sessions.read("c1", "s1")
    assert view is not None
    assert (view.billed_s, view.amount_minor) == (600, prorate_minor(7, 600)) == (600, 70)


async def test_a_late_tick_catches_up_exactly(meter: Meter, clock: FakeClock) -> None:
    ref = await open_tab(meter, cap_minor=100_000)
    session = await _start(meter, ref)
    clock.advance(2_500)  # a tick was missed; the lease (3 s) still holds
    [result] = await _tick(meter, session)
    assert (result.status, result.billed_s, result.amount_minor) == (
        "running",
        3,
        prorate_minor(600, 3),
    )


async def test_the_minimum_duration_is_charged_at_the_start(meter: Meter, clock: FakeClock) -> None:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600, minimum_s=5)})
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 50
    billed = []
    for _ in range(6):
        clock.advance(1_000)
        billed.append((await _tick(meter, session))[0].billed_s)
    assert billed == [5, 5, 5, 5, 6, 7]  # nothing more until the minimum is used up


async def test_a_minimum_that_does_not_fit_is_refused_with_the_amount_needed(meter: Meter) -> None:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600, minimum_s=300)})
    ref = await open_tab(meter, cap_minor=2_000)
    await meter.tip(ref, tip("t1", 500))
    result = await meter.sessions.start(
        ref, session_id="s1", room="alice", kind="private", currency="USD", owner=OWNER
    )
    assert (result.code, result.needed_minor) == (Code.INSUFFICIENT_CAP, 1_500)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 500
    assert await meter.sessions.read("c1", "s1") is None


async def test_the_session_ends_when_the_next_second_does_not_fit(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await open_tab(meter, cap_minor=105)  # 10 a second: ten seconds and a half
    session = await _start(meter, ref)
    results = []
    for _ in range(12):
        clock.advance(1_000)
        results.append((await _tick(meter, session))[0])
    finished = [r for r in results if r.status == "finished"]
    assert len(finished) == 1
    assert (finished[0].reason, finished[0].billed_s, finished[0].amount_minor) == (
        "cap_reached",
        10,
        100,
    )
    assert results[-1].status == "ended"
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.accrued_minor, tab.exhausted_at_ms > 0, tab.balance.burn_minor_per_minute) == (
        100,
        True,
        0,
    )
    events = (await meter.rooms.read("alice")).events
    await meter.rooms.relay_pending("c1")
    events = (await meter.rooms.read("alice")).events
    assert [e.event_type for e in events] == ["session_started", "session_ended"]
    ended = events[-1].data
    assert (ended["reason"], ended["seconds"], ended["amount"], ended["share"]) == (
        "cap_reached",
        10,
        100,
        60,
    )
    assert await meter.rooms.earnings("alice") == {"accrued:USD": 60}


async def test_tips_and_sessions_share_one_cap(meter: Meter, clock: FakeClock) -> None:
    ref = await open_tab(meter, cap_minor=300)
    one = await _start(meter, ref, "s1")
    two = await _start(meter, ref, "s2", room="bella")
    assert (await meter.tip(ref, tip("t1", 200))).code is Code.APPLIED
    for _ in range(10):
        clock.advance(1_000)
        await _tick(meter, one, two)
        await meter.tip(ref, tip(f"t{clock.now_ms()}", 7))
        tab = await meter.tabs.read(ref)
        assert tab is not None
        assert tab.accrued_minor <= tab.cap_minor
        assert tab.accrued_minor == sum(line.amount_minor for line in tab.lines)
    views = [await meter.sessions.read("c1", sid) for sid in ("s1", "s2")]
    assert all(v is not None and v.state == "ended" and v.reason == "cap_reached" for v in views)


async def test_settling_ends_sessions_without_billing(meter: Meter, clock: FakeClock) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    await meter.tabs.freeze(ref, "merchant")
    clock.advance(1_000)
    [result] = await _tick(meter, session)
    assert (result.status, result.reason, result.billed_s) == ("finished", "settling", 1)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert (tab.state, tab.accrued_minor) == (TabState.SETTLING, 10)


async def test_a_lapsed_lease_ends_the_session_without_billing_the_gap(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    clock.advance(1_000)
    await _tick(meter, session)
    clock.advance(30_000)  # the owner stalled for 30 s
    [result] = await _tick(meter, session)
    assert (result.status, result.reason, result.billed_s) == ("finished", "owner_lost", 2)


async def test_only_the_owner_bills(meter: Meter, clock: FakeClock) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    clock.advance(1_000)
    [result] = await _tick(meter, session, owner="someone-else")
    assert (result.status, result.billed_s) == ("not_owner", 1)


async def test_ending_is_once_and_stops_billing(meter: Meter, clock: FakeClock) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    clock.advance(1_000)
    await _tick(meter, session)
    first = await meter.sessions.end(session, EndReason.VIEWER_LEFT)
    again = await meter.sessions.end(session, EndReason.STOPPED)
    assert (first.code, first.billed_s) == (Code.APPLIED, 2)
    assert (again.code, again.reason) == (Code.DUPLICATE, "viewer_left")
    clock.advance(1_000)
    [result] = await _tick(meter, session)
    assert (result.status, result.billed_s) == ("ended", 2)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.accrued_minor == 20
    assert tab.balance.burn_minor_per_minute == 0


@pytest.mark.parametrize("reason", [EndReason.STOPPED, EndReason.VIEWER_LEFT, EndReason.MODEL_LEFT])
@pytest.mark.parametrize(
    ("since_tick_ms", "billed_s"),
    [(0, 2), (999, 2), (1_000, 3), (1_001, 3), (1_999, 3), (2_000, 4)],
)
async def test_a_stop_pays_through_the_last_second_begun(
    meter: Meter, clock: FakeClock, reason: EndReason, since_tick_ms: int, billed_s: int
) -> None:
    """docs/sessions.md: prepaid through the last second begun, also when the show stops
    between two ticks (the boundary: second n+1 begins at exactly n * 1000 ms)."""
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    clock.advance(1_000)
    [ticked] = await _tick(meter, session)
    assert ticked.billed_s == 2  # at 1.000 s: seconds 1 and 2 begun
    clock.advance(since_tick_ms)
    ended = await meter.sessions.end(session, reason)
    assert (ended.code, ended.billed_s, ended.amount_minor) == (
        Code.APPLIED,
        billed_s,
        prorate_minor(600, billed_s),
    )
    tab = await meter.tabs.read(ref)
    assert tab is not None
    [line] = tab.lines
    assert tab.accrued_minor == line.amount_minor == prorate_minor(600, billed_s)
    assert line.seconds == billed_s


async def test_a_stop_pays_for_the_second_begun_only_as_far_as_the_cap_allows(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await open_tab(meter, cap_minor=100)  # ten seconds at 600 a minute
    session = await _start(meter, ref)
    for _ in range(9):
        clock.advance(1_000)
        await _tick(meter, session)
    clock.advance(1_500)  # second 11 begun: it does not fit
    ended = await meter.sessions.end(session, EndReason.STOPPED)
    assert (ended.billed_s, ended.amount_minor) == (10, 100)


async def test_the_reaper_and_settling_bill_nothing_after_the_last_tick(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    clock.advance(3_500)  # the lease lapsed: the owner was away
    ended = await meter.sessions.end(session, EndReason.OWNER_LOST, only_if_lease_lapsed=True)
    assert (ended.code, ended.billed_s) == (Code.APPLIED, 1)
    other = await open_tab(meter, customer="c2", cap_minor=10_000)
    frozen = await _start(meter, other, sid="s2")
    await meter.tabs.freeze(other, "merchant")
    clock.advance(500)
    stopped = await meter.sessions.end(frozen, EndReason.STOPPED)
    assert (stopped.code, stopped.billed_s) == (Code.APPLIED, 1)


async def test_the_reaper_ends_a_dead_owners_sessions_once_their_leases_lapse(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    session = await _start(meter, ref)
    assert await meter.sessions.dead_owners(silent_ms=2_000) == []
    clock.advance(2_500)
    assert await meter.sessions.dead_owners(silent_ms=2_000) == [OWNER]
    assert await meter.sessions.reap(OWNER) == []  # the lease (3 s) has not lapsed yet
    clock.advance(1_000)
    [ended] = await meter.sessions.reap(OWNER)
    assert (ended.code, ended.billed_s) == (Code.APPLIED, 1)
    view = await meter.sessions.read("c1", "s1")
    assert view is not None
    assert (view.state, view.reason) == ("ended", "owner_lost")
    assert await meter.sessions.dead_owners(silent_ms=2_000) == []  # forgotten once empty
    [result] = await _tick(meter, session)
    assert result.status == "ended"


async def test_start_refusals(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=10_000)
    bad_kind = await meter.sessions.start(
        ref, session_id="s1", room="alice", kind="group", currency="USD", owner=OWNER
    )
    assert bad_kind.code is Code.INVALID_KIND
    wrong = await meter.sessions.start(
        ref, session_id="s1", room="alice", kind="spy", currency="EUR", owner=OWNER
    )
    assert wrong.code is Code.CURRENCY_MISMATCH
    await _start(meter, ref)
    again = await meter.sessions.start(
        ref, session_id="s1", room="alice", kind="private", currency="USD", owner=OWNER
    )
    assert (again.code, again.billed_s) == (Code.DUPLICATE, 1)


async def test_sessions_per_tab_are_bounded(store: Store, clock: FakeClock) -> None:
    meter = Meter(store, clock=clock, limits=Limits(sessions_per_tab_max=2))
    ref = await open_tab(meter, cap_minor=10_000)
    await _start(meter, ref, "s1")
    await _start(meter, ref, "s2")
    third = await meter.sessions.start(
        ref, session_id="s3", room="alice", kind="spy", currency="USD", owner=OWNER
    )
    assert third.code is Code.SESSIONS_FULL


@pytest.mark.parametrize(
    ("rate", "code"),
    [
        (Rate(0), Code.AMOUNT_OUT_OF_RANGE),
        (Rate(10**6), Code.AMOUNT_OUT_OF_RANGE),
        (Rate(100, minimum_s=-1), Code.INVALID_FIELD),
    ],
)
async def test_rates_stay_within_the_sites_bounds(meter: Meter, rate: Rate, code: Code) -> None:
    assert await meter.sessions.set_rates("alice", {SessionKind.SPY: rate}) is code
    assert (await meter.sessions.rates("alice"))[SessionKind.SPY] == Rate(200)
