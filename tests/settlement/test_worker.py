"""The worker: one capture per tab, every outcome recorded, every step safe to repeat."""

from __future__ import annotations

import asyncio

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import TabRef
from metering.store import stream_entries
from settlement import scripts
from settlement.gateway import CaptureResult, DeclineReason
from settlement.ledger.ledger import Ledger
from settlement.outcomes import SettleCode, SettlementOutcome
from settlement.queue import enqueue, request_settlement
from settlement.sandbox import Fault, SandboxGateway
from settlement.statements import build_statement, read_statement
from settlement.worker import SettleStatus, capture_key
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab, past_claim_bound, settled_share
from tests.support.waiting import eventually


async def _state(meter: Meter, ref: TabRef) -> TabState:
    tab = await meter.tabs.read(ref)
    assert tab is not None
    return tab.state


async def _is(meter: Meter, ref: TabRef, state: TabState) -> bool:
    return await _state(meter, ref) is state


async def _pending(meter: Meter) -> int:
    info = await meter.store.client.xpending(keys.settle_queue(), "workers")
    return int(info["pending"])


async def test_a_settled_tab_is_captured_once_itemized_and_credited(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    await meter.rooms.set_payout_bp("roomA", 6_000)
    await meter.rooms.set_payout_bp("roomB", 5_000)
    ref = await open_backed_tab(meter, gateway)
    for n, (room, amount) in enumerate([("roomA", 300), ("roomB", 250), ("roomA", 101)]):
        assert (await meter.tip(ref, tip(f"t{n}", amount, room=room))).code.ok
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    worker = make_worker(meter, gateway, ledger)

    report = await worker.run_burst()

    assert report.statuses == {"settled": 1}
    assert (report.acked, report.left_pending) == (1, 0)
    assert [(c.amount_minor, c.idempotency_key) for c in gateway.captures] == [
        (651, capture_key(ref))
    ]
    assert await _state(meter, ref) is TabState.SETTLED
    statement = await read_statement(meter.store, ref)
    assert statement is not None
    assert statement.total_minor == statement.captured_minor == 651
    assert statement.capture_id == gateway.captures[0].capture_id
    assert [(line.room, line.kind, line.count, line.amount_minor) for line in statement.lines] == [
        ("roomA", "tip", 2, 401),
        ("roomB", "tip", 1, 250),
    ]
    # 60 % of 300 and of 101 (floored), 50 % of 250: shares + platform = capture.
    assert statement.model_shares == (("roomA", 180 + 60), ("roomB", 125))
    assert statement.platform_minor == 651 - 240 - 125
    assert await settled_share(ledger, "roomA") == 240
    assert await settled_share(ledger, "roomB") == 125
    assert await ledger.find_capture(statement.capture_id) == ref
    assert await ledger.find_capture("cap_unknown") is None
    recorded = await ledger.read_tab(ref)
    assert recorded is not None
    assert build_statement(*recorded) == statement
    assert await meter.store.client.xlen(keys.settle_queue()) == 0

    # Everything again: queued twice more, settled by hand — nothing changes.
    await enqueue(meter.store, ref, "merchant", meter.clock.now_ms())
    await enqueue(meter.store, ref, "merchant", meter.clock.now_ms())
    again = await worker.run_burst()
    assert again.statuses == {"done_before": 2}
    assert await worker.settle_tab(ref) is SettleStatus.DONE_BEFORE
    assert len(gateway.captures) == 1
    assert await settled_share(ledger, "roomA") == 240
    assert [e.settlements for e in await ledger.room_earnings("roomA")] == [1]


async def test_repeating_every_step_by_hand_changes_nothing(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 500))
    await request_settlement(meter, ref, FreezeReason.CUSTOMER_ENDED)
    worker = make_worker(meter, gateway, ledger)
    assert await worker.settle_tab(ref) is SettleStatus.SETTLED
    for _ in range(2):
        assert await worker.settle_tab(ref) is SettleStatus.DONE_BEFORE
    assert len(gateway.captures) == 1
    assert await settled_share(ledger, "room1") == 300
    first = await scripts.begin_settlement(meter.store, ref, key="k", now_ms=0)
    assert first.code is SettleCode.TAB_NOT_SETTLING
    again = await scripts.record_settlement(
        meter.store, ref, SettlementOutcome.DECLINED, now_ms=0, decline_reason="x"
    )
    assert (again.code, again.outcome) == (SettleCode.DUPLICATE, "captured")


async def test_a_capture_of_another_amount_is_never_recorded(
    meter: Meter, gateway: SandboxGateway
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 500))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    begin = await scripts.begin_settlement(meter.store, ref, key="k", now_ms=1)
    assert (begin.code, begin.amount_minor, begin.attempts) == (SettleCode.APPLIED, 500, 1)
    again = await scripts.begin_settlement(meter.store, ref, key="k", now_ms=2)
    assert (again.code, again.amount_minor, again.attempts) == (SettleCode.DUPLICATE, 500, 2)
    wrong = await scripts.record_settlement(
        meter.store, ref, SettlementOutcome.CAPTURED, now_ms=3, captured_minor=499, capture_id="x"
    )
    assert wrong.code is SettleCode.AMOUNT_MISMATCH
    assert await _state(meter, ref) is TabState.SETTLING


async def test_nothing_accrued_voids_the_hold(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await request_settlement(meter, ref, FreezeReason.CUSTOMER_ENDED)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert report.statuses == {"voided": 1}
    assert gateway.captures == []
    tab = await meter.tabs.read(ref)
    assert tab is not None
    assert tab.state is TabState.VOIDED
    voided = await gateway.lookup(f"void:c1/{ref.tab_id}")
    assert voided is not None
    assert not isinstance(voided, CaptureResult)


async def test_a_declined_capture_fails_the_tab_with_what_collection_needs(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    stolen = await open_backed_tab(meter, gateway, "c1", card="tok_capture_decline_stolen_card")
    broke = await open_backed_tab(
        meter, gateway, "c2", card="tok_capture_decline_insufficient_funds"
    )
    for ref in (stolen, broke):
        await meter.tip(ref, tip("t1", 700))
        await request_settlement(meter, ref, FreezeReason.CAP_REACHED)
    report = await make_worker(meter, gateway, ledger).run_burst()
    assert report.statuses == {"failed": 2}
    assert gateway.captures == []
    for ref, reason, retryable in (
        (stolen, DeclineReason.STOLEN_CARD, False),
        (broke, DeclineReason.INSUFFICIENT_FUNDS, True),
    ):
        found = await scripts.read_settlement(meter.store, ref)
        assert found is not None
        tab, record = found
        assert tab.state is TabState.FAILED
        assert (record.outcome, record.decline_reason, record.retryable) == (
            SettlementOutcome.DECLINED,
            reason.value,
            retryable,
        )
        # Collection needs the amount owed, the hold and the currency: all on the tab.
        assert (record.amount_minor, tab.auth_ref, tab.currency) == (700, tab.auth_ref, "USD")
        assert record.captured_minor == 0


async def test_timeout_after_commit_is_retried_with_the_same_key(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 400))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    gateway.inject("capture", Fault.TIMEOUT_AFTER_COMMIT)
    worker = make_worker(meter, gateway, ledger)
    first = await worker.run_burst()
    assert (first.statuses, first.left_pending) == ({"retry_later": 1}, 1)
    assert len(gateway.captures) == 1  # committed, but the worker does not know it
    assert await _state(meter, ref) is TabState.SETTLING
    assert await _pending(meter) == 1

    await past_claim_bound(meter)
    second = await make_worker(meter, gateway, ledger, consumer="w2").run_burst()
    assert second.statuses == {"settled": 1}
    assert len(gateway.captures) == 1
    assert await _state(meter, ref) is TabState.SETTLED
    assert await _pending(meter) == 0


async def test_failure_before_commit_then_success(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 400))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    gateway.inject("capture", Fault.FAIL_BEFORE_COMMIT)
    gateway.slow_s = 0.2
    worker = make_worker(meter, gateway, ledger)
    assert (await worker.run_burst()).left_pending == 1
    assert gateway.captures == []
    await past_claim_bound(meter)
    gateway.inject("capture", Fault.SLOW)  # slower than the 50 ms gateway bound: unavailable
    assert (await worker.run_burst()).left_pending == 1
    await past_claim_bound(meter)
    assert (await worker.run_burst()).statuses == {"settled": 1}
    assert len(gateway.captures) == 1


async def test_no_capture_is_attempted_on_an_expired_hold(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 400))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    tab = await meter.tabs.read(ref)
    assert tab is not None
    clock.advance(tab.capture_before_ms - clock.now_ms())  # the hold lapses now
    gateway.inject("capture", Fault.FAIL_BEFORE_COMMIT)  # would show up as retry_later
    report = await make_worker(meter, gateway, ledger).run_burst(sweep=False)
    assert report.statuses == {"expired": 1}
    assert await gateway.lookup(capture_key(ref)) is None
    found = await scripts.read_settlement(meter.store, ref)
    assert found is not None
    assert found[0].state is TabState.EXPIRED
    assert (found[1].decline_reason, found[1].captured_minor) == ("hold_expired", 0)


async def test_an_earlier_capture_is_found_when_the_hold_has_expired_since(
    meter: Meter, gateway: SandboxGateway, clock: FakeClock, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 400))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    gateway.inject("capture", Fault.TIMEOUT_AFTER_COMMIT)
    assert (await make_worker(meter, gateway, ledger).run_burst()).left_pending == 1
    tab = await meter.tabs.read(ref)
    assert tab is not None
    clock.advance(tab.capture_before_ms - clock.now_ms() + 1)
    await past_claim_bound(meter)
    report = await make_worker(meter, gateway, ledger, consumer="w2").run_burst(sweep=False)
    assert report.statuses == {"settled": 1}
    assert len(gateway.captures) == 1


async def test_a_refused_request_is_dead_lettered_after_the_bound(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    result = await meter.tabs.open(
        customer="c9",
        currency="USD",
        cap_minor=1_000,
        auth_ref="auth_unknown",
        capture_before_ms=meter.clock.now_ms() + 10**9,
    )
    ref = TabRef("c9", result.tab_id)
    await meter.tip(ref, tip("t1", 100))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    worker = make_worker(meter, gateway, ledger)
    dead = 0
    for _ in range(4):  # deliveries_max is 3
        report = await worker.run_burst(sweep=False)
        dead += report.dead_lettered
        await past_claim_bound(meter)
    assert dead == 1
    letters = stream_entries(await meter.store.client.xrange(keys.settle_dead_letters()))
    assert [(f["customer"], f["tab"]) for _, f in letters] == [(b"c9", ref.tab_id.encode())]
    assert b"no hold" in letters[0][1]["why"]
    assert await _pending(meter) == 0
    found = await scripts.read_settlement(meter.store, ref)
    assert found is not None
    assert found[1].dead_lettered_at_ms > 0


async def test_a_malformed_entry_is_dead_lettered_at_once(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    await meter.store.client.xadd(keys.settle_queue(), {"customer": "a:b", "tab": "x"})
    report = await make_worker(meter, gateway, ledger).run_burst(sweep=False)
    assert report.dead_lettered == 1
    assert await meter.store.client.xlen(keys.settle_dead_letters()) == 1
    assert await meter.store.client.xlen(keys.settle_queue()) == 0


async def test_run_stops_on_its_event(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 250))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    stop = asyncio.Event()
    worker = make_worker(meter, gateway, ledger)
    task = asyncio.create_task(worker.run(stop))
    await eventually(lambda: _is(meter, ref, TabState.SETTLED))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await _state(meter, ref) is TabState.SETTLED


async def test_a_long_gateway_outage_does_not_dead_letter(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    ref = await open_backed_tab(meter, gateway)
    await meter.tip(ref, tip("t1", 400))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    worker = make_worker(meter, gateway, ledger)  # deliveries_max is 3
    gateway.inject("capture", Fault.FAIL_BEFORE_COMMIT, times=6)
    for _ in range(6):
        report = await worker.run_burst(sweep=False)
        assert (report.left_pending, report.dead_lettered) == (1, 0)
        await past_claim_bound(meter)
    assert (await worker.run_burst(sweep=False)).statuses == {"settled": 1}
    assert await meter.store.client.xlen(keys.settle_dead_letters()) == 0


async def test_the_loop_recreates_a_lost_consumer_group(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    worker = make_worker(meter, gateway, ledger)
    await worker.setup()
    await meter.store.client.delete(keys.settle_queue())  # as after a restart without data
    ref = await open_backed_tab(meter, gateway)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    # The loop meets the missing group and creates it again (with its stream) before the entry.
    await eventually(lambda: meter.store.client.exists(keys.settle_queue()))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    await eventually(lambda: _is(meter, ref, TabState.VOIDED))
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await _state(meter, ref) is TabState.VOIDED
