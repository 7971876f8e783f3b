"""A member's allowance on a tab (metering/allowances.py), against a real redis-server: free
seconds taken in the same Lua step as the cap check, at every boundary; discounts by the one
rule; the reserve never negative and never spent twice."""

from __future__ import annotations

import pytest

from metering.allowances import AllowanceKind, Grant, Reserve, read_reserve, reserve
from metering.clock import FakeClock
from metering.meter import Meter
from metering.money import BP_ONE, discounted_minor, prorate_minor
from metering.outcomes import Code, Line, Tab, TabRef
from metering.sessions import Rate, SessionKind, SessionRef, TickResult
from tests.metering.helpers import open_tab, tip

OWNER = "proc-a"
PRIVATE = AllowanceKind.PRIVATE


async def _start(meter: Meter, ref: TabRef, sid: str = "s1", kind: str = "private") -> SessionRef:
    result = await meter.sessions.start(
        ref, session_id=sid, room="alice", kind=kind, currency="USD", owner=OWNER
    )
    assert result.code is Code.APPLIED, result
    return SessionRef(ref.customer, sid, ref.tab_id)


async def _tick(meter: Meter, *refs: SessionRef) -> list[TickResult]:
    return await meter.sessions.tick(OWNER, list(refs))


async def _tab(meter: Meter, ref: TabRef) -> Tab:
    tab = await meter.tabs.read(ref)
    assert tab is not None
    return tab


async def _reserves(meter: Meter, ref: TabRef) -> dict[AllowanceKind, Reserve]:
    reserves = await read_reserve(meter.store, ref)
    assert reserves is not None
    return reserves


def _line(tab: Tab, line_id: str) -> Line:
    [line] = [line for line in tab.lines if line.line_id == line_id]
    return line


async def _member_tab(meter: Meter, cap_minor: int, *grants: Grant) -> TabRef:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600)})
    ref = await open_tab(meter, cap_minor=cap_minor)
    assert await reserve(meter.store, ref, "sub1/1", grants) is Code.APPLIED
    return ref


async def test_free_seconds_run_out_in_the_middle_of_a_tick(meter: Meter, clock: FakeClock) -> None:
    ref = await _member_tab(meter, 10_000, Grant(PRIVATE, free_s=5))
    session = await _start(meter, ref)
    tab = await _tab(meter, ref)
    assert tab.accrued_minor == 0  # the first (prepaid) second is free
    clock.advance(2_000)
    [result] = await _tick(meter, session)
    assert (result.billed_s, result.amount_minor) == (3, 0)
    clock.advance(3_000)  # one late tick: seconds 4 to 6, of which 4 and 5 are free
    [result] = await _tick(meter, session)
    assert (result.status, result.billed_s, result.amount_minor) == ("running", 6, 10)
    tab = await _tab(meter, ref)
    line = _line(tab, "sess:s1")
    assert (line.seconds, line.covered_s, line.amount_minor, line.saved_minor) == (6, 5, 10, 50)
    assert line.session_kind == "private"
    assert tab.accrued_minor == sum(line.amount_minor for line in tab.lines) == 10
    reserves = await _reserves(meter, ref)
    assert (reserves[PRIVATE].reserved_s, reserves[PRIVATE].left_s) == (5, 0)


async def test_cap_and_allowance_both_bind_in_one_tick(meter: Meter, clock: FakeClock) -> None:
    ref = await _member_tab(meter, 100, Grant(PRIVATE, free_s=3))
    assert (await meter.tip(ref, tip("t1", 70))).code is Code.APPLIED  # 30 left: 3 paid seconds
    session = await _start(meter, ref)
    clock.advance(3_000)  # four seconds begun: 2 more free, 1 to pay
    await _tick(meter, session)
    clock.advance(3_000)  # seven begun: 3 more to pay, 2 fit
    [result] = await _tick(meter, session)
    assert (result.status, result.reason) == ("finished", "cap_reached")
    assert (result.billed_s, result.amount_minor, result.accrued_minor) == (6, 30, 100)
    tab = await _tab(meter, ref)
    assert tab.accrued_minor == tab.cap_minor == sum(line.amount_minor for line in tab.lines)
    assert _line(tab, "sess:s1").covered_s == 3
    reserves = await _reserves(meter, ref)
    assert reserves[PRIVATE].left_s == 0


async def test_a_start_that_does_not_fit_takes_nothing_from_the_reserve(meter: Meter) -> None:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600, minimum_s=60)})
    ref = await open_tab(meter, cap_minor=100)
    assert await reserve(meter.store, ref, "sub1/1", [Grant(PRIVATE, free_s=10)]) is Code.APPLIED
    result = await meter.sessions.start(
        ref, session_id="s1", room="alice", kind="private", currency="USD", owner=OWNER
    )
    # 60 s minimum: 10 free, 50 at 10 a second is 500 > 100.
    assert (result.code, result.needed_minor) == (Code.INSUFFICIENT_CAP, 400)
    reserves = await _reserves(meter, ref)
    assert reserves[PRIVATE].left_s == 10


async def test_two_sessions_share_one_reserve_and_never_overdraw_it(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await _member_tab(meter, 10_000, Grant(PRIVATE, free_s=7))
    first = await _start(meter, ref, "s1")
    second = await _start(meter, ref, "s2")
    for _ in range(10):
        clock.advance(1_000)
        await _tick(meter, first, second)
    tab = await _tab(meter, ref)
    covered = [_line(tab, f"sess:{sid}").covered_s for sid in ("s1", "s2")]
    assert sum(covered) == 7
    assert all(_line(tab, f"sess:{sid}").seconds == 11 for sid in ("s1", "s2"))
    assert tab.accrued_minor == prorate_minor(600, 11 - covered[0]) + prorate_minor(
        600, 11 - covered[1]
    )
    reserves = await _reserves(meter, ref)
    assert reserves[PRIVATE].left_s == 0


async def test_a_rate_discount_is_fixed_at_the_start_and_prorated_over_the_whole(
    meter: Meter, clock: FakeClock
) -> None:
    ref = await _member_tab(meter, 10_000, Grant(PRIVATE, discount_bp=2_500))
    session = await _start(meter, ref)
    for _ in range(59):
        clock.advance(1_000)
        await _tick(meter, session)
    line = _line(await _tab(meter, ref), "sess:s1")
    assert (line.seconds, line.amount_minor, line.saved_minor) == (60, 450, 150)
    assert line.share_minor == 450 * line.payout_bp // BP_ONE


async def test_free_seconds_then_the_discounted_rate(meter: Meter, clock: FakeClock) -> None:
    ref = await _member_tab(meter, 10_000, Grant(PRIVATE, free_s=30, discount_bp=5_000))
    session = await _start(meter, ref)
    for _ in range(89):
        clock.advance(1_000)
        await _tick(meter, session)
    line = _line(await _tab(meter, ref), "sess:s1")
    # 90 s: 30 free, 60 at 300 a minute.
    assert (line.seconds, line.covered_s, line.amount_minor, line.saved_minor) == (90, 30, 300, 600)


@pytest.mark.parametrize("amount", [1, 9, 10, 11, 101, 999, 100_000])
async def test_a_tip_discount_follows_the_one_rule(meter: Meter, amount: int) -> None:
    ref = await open_tab(meter, cap_minor=200_000)
    grant = Grant(AllowanceKind.TIP, discount_bp=1_250)
    assert await reserve(meter.store, ref, "sub1/1", [grant]) is Code.APPLIED
    result = await meter.tip(ref, tip("t1", amount))
    assert result.code is Code.APPLIED
    charged = discounted_minor(amount, 1_250)
    assert result.balance.accrued_minor == charged
    line = _line(await _tab(meter, ref), "tip:t1")
    assert (line.amount_minor, line.saved_minor) == (charged, amount - charged)
    # A retry of the same tip is recognised by the amount asked, and changes nothing.
    again = await meter.tip(ref, tip("t1", amount))
    assert (again.code, again.balance.accrued_minor) == (Code.DUPLICATE, charged)


async def test_a_tip_discount_decides_whether_it_fits_under_the_cap(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=100)
    assert (
        await reserve(meter.store, ref, "s/1", [Grant(AllowanceKind.TIP, 0, 5_000)]) is Code.APPLIED
    )
    assert (await meter.tip(ref, tip("t1", 200))).code is Code.APPLIED  # charged 100
    assert (await meter.tip(ref, tip("t2", 2))).code is Code.OVER_CAP


async def test_a_reservation_enters_a_tab_once_and_only_while_it_spends(meter: Meter) -> None:
    ref = await open_tab(meter, cap_minor=1_000)
    grants = [Grant(PRIVATE, free_s=60), Grant(AllowanceKind.SPY, free_s=0, discount_bp=100)]
    assert await reserve(meter.store, ref, "sub1/1", grants) is Code.APPLIED
    assert await reserve(meter.store, ref, "sub1/1", grants) is Code.DUPLICATE
    assert await reserve(meter.store, ref, "sub2/4", [Grant(PRIVATE, 30, 50)]) is Code.APPLIED
    reserves = await _reserves(meter, ref)
    assert (reserves[PRIVATE].reserved_s, reserves[PRIVATE].left_s) == (90, 90)
    assert reserves[PRIVATE].discount_bp == 50
    assert reserves[AllowanceKind.SPY].discount_bp == 100
    await meter.tabs.freeze(ref, "merchant")
    assert await reserve(meter.store, ref, "sub3/1", grants) is Code.TAB_NOT_OPEN
    missing = TabRef("c1", "tab_missing")
    assert await reserve(meter.store, missing, "sub1/1", grants) is Code.TAB_NOT_FOUND


def test_the_discount_rule() -> None:
    assert [discounted_minor(a, 1_000) for a in (0, 1, 9, 10, 19, 100)] == [0, 1, 9, 9, 18, 90]
    assert discounted_minor(123, 0) == 123
    assert discounted_minor(123, BP_ONE) == 0
    with pytest.raises(ValueError, match="discount_bp"):
        discounted_minor(1, BP_ONE + 1)
