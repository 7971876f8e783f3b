"""Allowances that reach the meter, end to end on a real PostgreSQL and a real redis-server:
a plan's free seconds reserved into a member's tab, consumed by the per-second billing,
recorded at settlement, shown with what is left; never spent twice across the member's tabs."""

from __future__ import annotations

from typing import Any

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Code, TabRef
from metering.sessions import EndReason, Rate, SessionKind, SessionRef
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds
from settlement.sandbox import SandboxGateway
from settlement.statements import build_statement, statement_data
from settlement.subscriptions.allowances import reserve_for_tab
from settlement.subscriptions.service import SubCode, Subscriptions
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab
from tests.settlement.subscriptions.helpers import World, plan, signup

OWNER = "proc-a"
VIP = [
    {"kind": "private", "unit": "seconds", "granted": 60},
    {"kind": "tip", "unit": "bp", "granted": 1_000},
]


async def _member(meter: Meter, ledger: Ledger, clock: FakeClock) -> Subscriptions:
    """Make c1 a VIP member (subscription s1) and price alice's private shows at 600 a minute;
    the subscriptions service that sees the meter, for reading what is left of the allowance."""
    world = World(ledger, clock)
    await world.subs.put_plan(plan("vip", allowances=VIP), clock.now_ms())
    created = await world.subs.create(signup("s1", "vip", customer="c1"), clock.now_ms())
    assert created.code is SubCode.APPLIED
    await world.run()
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600)})
    return Subscriptions(ledger.database, world.processors, meter_store=meter.store)


async def _reserve(meter: Meter, ledger: Ledger, ref: TabRef) -> list[str]:
    tab = await meter.tabs.read(ref)
    assert tab is not None
    return await reserve_for_tab(
        ledger.database,
        meter.store,
        ref,
        expires_ms=tab.capture_before_ms,
        now_ms=meter.clock.now_ms(),
    )


async def _watch(meter: Meter, clock: FakeClock, ref: TabRef, seconds: int, sid: str) -> None:
    started = await meter.sessions.start(
        ref, session_id=sid, room="alice", kind="private", currency="USD", owner=OWNER
    )
    assert started.code is Code.APPLIED, started
    session = SessionRef(ref.customer, sid, ref.tab_id)
    for _ in range(seconds - 1):
        clock.advance(1_000)
        await meter.sessions.tick(OWNER, [session])
    ended = await meter.sessions.end(session, EndReason.VIEWER_LEFT)
    assert (ended.code, ended.billed_s) == (Code.APPLIED, seconds)


async def _allowance(subs: Subscriptions, sid: str) -> list[dict[str, Any]]:
    view = await subs.view(sid)
    assert view is not None
    allowance: list[dict[str, Any]] = view["allowance"]
    return allowance


async def _settle(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, ref: TabRef, status: str = "settled"
) -> None:
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert report.statuses[status] == 1, report


async def test_a_member_with_60_free_seconds_watches_90_and_pays_for_30(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    subs = await _member(meter, ledger, clock)
    ref = await open_backed_tab(meter, gateway, "c1")
    assert await _reserve(meter, ledger, ref) == ["s1/1"]
    assert await _reserve(meter, ledger, ref) == ["s1/1"]  # a retry reserves nothing more
    await _watch(meter, clock, ref, 90, "show1")
    assert (await meter.tip(ref, tip("t1", 100, room="alice"))).code is Code.APPLIED
    # While the tab is open, the member sees the seconds its show used.
    assert await _allowance(subs, "s1") == [
        {"kind": "private", "unit": "seconds", "granted": 60, "used": 60, "left": 0},
        {"kind": "tip", "unit": "bp", "granted": 1_000, "used": 0, "left": 1_000},
    ]
    await _settle(meter, gateway, ledger, ref)

    recorded = await ledger.read_tab(ref)
    assert recorded is not None
    tab, record = recorded
    data = statement_data(build_statement(tab, record))
    # 30 s at 600 a minute, and a tip of 100 less 10 %.
    assert data["captured_minor"] == data["total_minor"] == 300 + 90
    [tip_line] = [line for line in data["lines"] if line["kind"] == "tip"]
    assert (tip_line["amount_minor"], tip_line["saved_minor"]) == (90, 10)
    [show] = [line for line in data["lines"] if line["kind"] == "session"]
    assert (show["seconds"], show["covered_seconds"], show["amount_minor"]) == (90, 60, 300)
    assert show["saved_minor"] == 600  # 60 s at 600 a minute
    async with ledger.database.connection() as conn:
        assert await journal.unbalanced_entries(conn) == []
        cursor = await conn.execute(
            "SELECT reserved_s, used_s, settlement_id FROM allowance_reservations"
        )
        rows = await cursor.fetchall()
    assert [(r["reserved_s"], r["used_s"], r["settlement_id"]) for r in rows] == [
        (60, 60, f"c1/{ref.tab_id}")
    ]
    assert await ledger.account_balance(journal.customer_tab(f"c1/{ref.tab_id}", "USD")) == 0
    assert (await _allowance(subs, "s1"))[0]["left"] == 0


async def test_the_allowance_is_never_in_two_tabs_and_what_is_unused_returns(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    subs = await _member(meter, ledger, clock)
    usd = await open_backed_tab(meter, gateway, "c1", currency="USD")
    eur = await open_backed_tab(meter, gateway, "c1", currency="EUR")
    assert await _reserve(meter, ledger, usd) == ["s1/1"]
    # The USD tab holds all 60 s: the EUR tab gets only the discount, no free seconds.
    assert await _reserve(meter, ledger, eur) == ["s1/1"]
    started = await meter.sessions.start(
        eur, session_id="e1", room="alice", kind="private", currency="EUR", owner=OWNER
    )
    assert (started.code, started.amount_minor) == (Code.APPLIED, 10)
    await meter.sessions.end(SessionRef("c1", "e1", eur.tab_id), EndReason.VIEWER_LEFT)
    await _watch(meter, clock, usd, 20, "show1")
    # All of it was free: nothing to capture, the hold is voided, the use recorded all the same.
    await _settle(meter, gateway, ledger, usd, "voided")
    assert (await _allowance(subs, "s1"))[0] == {
        "kind": "private",
        "unit": "seconds",
        "granted": 60,
        "used": 20,
        "left": 40,
    }
    # The 40 s the USD tab did not use are free again: the member's next tab holds them.
    later = await open_backed_tab(meter, gateway, "c1", currency="USD")
    assert await _reserve(meter, ledger, later) == ["s1/1"]
    await _watch(meter, clock, later, 50, "show2")
    statement = await meter.tabs.read(later)
    assert statement is not None
    [line] = [line for line in statement.lines if line.kind == "session"]
    assert (line.covered_s, line.amount_minor) == (40, 100)


async def test_a_member_tab_with_a_show_the_allowance_paid_whole_can_be_refunded(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    await _member(meter, ledger, clock)
    ref = await open_backed_tab(meter, gateway, "c1")
    await _reserve(meter, ledger, ref)
    await _watch(meter, clock, ref, 30, "free-show")  # all 30 s free: a line of 0
    await _watch(meter, clock, ref, 90, "paid-show")  # 30 s free, 60 s paid: 600
    await _settle(meter, gateway, ledger, ref)
    refunds = Refunds(ledger.database, lambda _name: gateway, clock)
    request = RefundRequest("rf-1", ref, Reason.SHOW_NOT_DELIVERED, lines={"sess:paid-show": None})
    answer = await refunds.request(request)
    assert answer.body["status"] == "succeeded", answer.body
    assert answer.body["amount_minor"] == 600
    async with ledger.database.connection() as conn:
        assert await journal.unbalanced_entries(conn) == []
