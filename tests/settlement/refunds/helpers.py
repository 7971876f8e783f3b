"""Builders of settled tabs for the refunds tests: real Redis, the sandbox, the worker, the
ledger on a real PostgreSQL."""

from __future__ import annotations

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import TabRef
from metering.sessions import EndReason, Rate, SessionKind, SessionRef
from settlement.gateway import Gateway
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab


async def settled_tab(
    meter: Meter,
    gateway: Gateway,
    ledger: Ledger,
    clock: FakeClock,
    *,
    customer: str = "c1",
    tips: tuple[tuple[str, int, str], ...] = (("t1", 301, "roomA"), ("t2", 250, "roomB")),
    show_s: int = 0,
    show_kind: SessionKind = SessionKind.PRIVATE,
    messages: dict[str, str] | None = None,
) -> tuple[TabRef, str]:
    """Open a tab, tip (with ``messages`` by tip id), optionally watch a show of ``show_s``
    seconds in roomA (120 a minute), settle it through the worker; return the tab and its
    capture id."""
    await meter.rooms.set_payout_bp("roomA", 6_000)
    await meter.rooms.set_payout_bp("roomB", 7_000)
    ref = await open_backed_tab(meter, gateway, customer=customer)
    for tip_id, amount, room in tips:
        message = (messages or {}).get(tip_id, "")
        assert (await meter.tip(ref, tip(tip_id, amount, room=room, message=message))).code.ok
    if show_s:
        await watch_show(meter, clock, ref, "s1", show_s, show_kind)
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert report.statuses == {"settled": 1}, report
    found = await ledger.read_tab(ref)
    assert found is not None
    assert found[1].capture_id
    return ref, found[1].capture_id


async def watch_show(
    meter: Meter,
    clock: FakeClock,
    ref: TabRef,
    session_id: str,
    show_s: int,
    kind: SessionKind = SessionKind.PRIVATE,
) -> None:
    """Watch a show of ``kind`` for ``show_s`` seconds in roomA (120 a minute), ticked each
    second of the fake clock, then stop it."""
    await meter.sessions.set_rates("roomA", {kind: Rate(120)})
    started = await meter.sessions.start(
        ref, session_id=session_id, room="roomA", kind=str(kind), currency="USD", owner="o1"
    )
    assert started.code.ok, started
    show = SessionRef(ref.customer, session_id, ref.tab_id)
    for _ in range(show_s):
        clock.advance(1_000)
        await meter.sessions.tick("o1", [show])
    await meter.sessions.end(show, EndReason.STOPPED)


async def refund_by_support(
    refunds: Refunds, refund_id: str, ref: TabRef, amount_minor: int | None
) -> None:
    """Refund ``amount_minor`` of ``ref`` (None: all that is left) as support's goodwill,
    beyond the policy; fail the test unless it succeeded."""
    answer = await refunds.request(
        RefundRequest(
            refund_id,
            ref,
            Reason.GOODWILL,
            amount_minor=amount_minor,
            override_by="support-1",
            override_reason="goodwill",
        )
    )
    assert answer.body["status"] == "succeeded", answer.body
