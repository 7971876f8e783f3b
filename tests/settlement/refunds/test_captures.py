"""Refunds of a tab captured once per hold (a processor without incremental authorization):
each refund goes back to the capture(s) that took its lines, never past what a capture took."""

from __future__ import annotations

from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import Line, TabRef
from settlement.gateway import RefundResult
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.processors.registry import ProcessorRegistry
from settlement.queue import request_settlement
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds, capture_split
from settlement.sandbox import SandboxGateway
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, raised_by_second_hold


def _line(line_id: str, seq: int, amount: int) -> Line:
    return Line("tip", line_id, seq, seq, "roomA", amount, 6_000, amount * 6 // 10)


def test_each_line_is_given_back_by_the_captures_it_lies_in_latest_first() -> None:
    lines = [_line("tip:a", 1, 3_000), _line("tip:b", 2, 3_000)]
    captures = [("h1", 5_000), ("h2", 1_000)]
    # b lies across both captures: the later one first, then the first.
    assert capture_split(lines, captures, {}, [("tip:b", 3_000)]) == [
        ("h1", 0, 2_000),
        ("h2", 1, 1_000),
    ]
    # a lies in the first capture only.
    assert capture_split(lines, captures, {}, [("tip:a", 1_000)]) == [("h1", 0, 1_000)]
    # A capture given back whole by earlier refunds is not asked again: the other one is.
    assert capture_split(lines, captures, {"h2": 1_000}, [("tip:b", 500)]) == [("h1", 0, 500)]
    assert capture_split(lines, captures, {"h1": 4_500}, [("tip:a", 1_000)]) == [
        ("h1", 0, 500),
        ("h2", 1, 500),
    ]


async def _settled_over_two_holds(
    meter: Meter, clock: FakeClock, ledger: Ledger, flat: SandboxGateway
) -> tuple[TabRef, str, str]:
    """A tab opened on a 5,000 hold, raised to 8,000 by a second hold of 3,000, tipped 3,000
    twice and settled: 5,000 captured on the first hold, 1,000 on the second."""
    await meter.rooms.set_payout_bp("roomA", 6_000)
    ref, first, second = await raised_by_second_hold(meter, flat)
    for tip_id in ("a", "b"):
        assert (await meter.tip(ref, tip(tip_id, 3_000, room="roomA"))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    report = await make_worker(meter, ProcessorRegistry.single(flat), ledger).run_burst()
    assert report.statuses == {"settled": 1}
    assert sorted((c.auth_ref, c.amount_minor) for c in flat.captures) == sorted(
        [(first, 5_000), (second, 1_000)]
    )
    return ref, first, second


def _override(refund_id: str, ref: TabRef, lines: dict[str, int | None]) -> RefundRequest:
    return RefundRequest(
        refund_id, ref, Reason.GOODWILL, lines=lines, override_by="s1", override_reason="test"
    )


async def test_a_tab_captured_per_hold_is_refunded_against_the_right_captures(
    meter: Meter, clock: FakeClock, ledger: Ledger
) -> None:
    flat = SandboxGateway(clock=clock, incremental=False)
    ref, first, second = await _settled_over_two_holds(meter, clock, ledger, flat)
    capture_of = {c.auth_ref: c.capture_id for c in flat.captures}
    refunds = Refunds(ledger.database, lambda _n: flat, clock)

    # b was captured 2,000 on the first hold and 1,000 on the second.
    b = await refunds.request(_override("rf-b", ref, {"tip:b": None}))
    assert b.body["status"] == "succeeded", b.body
    assert [(c["capture_id"], c["amount_minor"]) for c in b.body["captures"]] == [
        (capture_of[first], 2_000),
        (capture_of[second], 1_000),
    ]
    # a then takes what is left of the first capture: 3,000. Refunded against the first
    # capture alone, b would have left it 3,000 short and the processor would refuse a.
    a = await refunds.request(_override("rf-a", ref, {"tip:a": None}))
    assert a.body["status"] == "succeeded", a.body
    assert [(c["capture_id"], c["amount_minor"]) for c in a.body["captures"]] == [
        (capture_of[first], 3_000)
    ]
    # The processor's own record: each capture refunded whole, by the keys of each part.
    totals: dict[str, int] = {}
    for key in ("refund:rf-b", f"refund:rf-b#{second}", "refund:rf-a"):
        result = await flat.lookup(key)
        assert isinstance(result, RefundResult), key
        totals[result.capture_id] = max(
            totals.get(result.capture_id, 0), result.refunded_total_minor
        )
    assert totals == {capture_of[first]: 5_000, capture_of[second]: 1_000}
    # The same request again repeats the same keys: nothing is refunded twice.
    again = await refunds.request(_override("rf-b", ref, {"tip:b": None}))
    assert not again.created
    assert len(flat.captures) == 2
    async with ledger.database.connection() as conn:
        assert await journal.unbalanced_entries(conn) == []
    clearing = journal.processor_clearing("sandbox", "USD")
    assert await ledger.account_balance(clearing) == 0
