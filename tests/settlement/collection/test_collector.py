"""Collection over the real ledger, the sandbox processor and the real settlement worker."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from metering.clock import FakeClock
from metering.meter import Meter
from metering.store import Store
from settlement import webhooks
from settlement.collection import collector as collection
from settlement.collection import outbox
from settlement.collection.collector import (
    ChargeCode,
    CollectionConfig,
    Collector,
    case_id_of,
)
from settlement.collection.lifecycle import CaseState
from settlement.collection.links import LinkLimits, LinkRefusal
from settlement.collection.outbox import Relay
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.ledger.times import at
from settlement.outcomes import SettleCode
from settlement.processors.registry import ProcessorRegistry
from settlement.sandbox import Fault, SandboxGateway
from settlement.subscriptions import export
from settlement.webhooks import Deliverer, WebhookConfig, verify_signature
from tests.settlement.collection.helpers import failed_tab
from tests.settlement.receiver import receiving

DAY_MS = 24 * 3_600_000
SECRET = "whsec_collection"
CONFIG = CollectionConfig(
    retry_schedule_ms=(DAY_MS, 2 * DAY_MS),
    link_secret="link-secret",
    write_off_grace_ms=3 * DAY_MS,
)


def _collector(
    gateway: SandboxGateway, ledger: Ledger, config: CollectionConfig = CONFIG
) -> Collector:
    return Collector(ledger, ProcessorRegistry.single(gateway), config)


async def _balance(ledger: Ledger, account: journal.Account) -> int:
    return await ledger.account_balance(account)


async def _tab_state(ledger: Ledger, sid: str) -> str:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT state FROM settlements WHERE settlement_id = %s", (sid,)
        )
        row = await cursor.fetchone()
    assert row is not None
    return str(row["state"])


def _collection_captures(gateway: SandboxGateway, case_id: str) -> list[str]:
    return [
        c.capture_id for c in gateway.captures if c.idempotency_key.startswith(f"collect:{case_id}")
    ]


async def test_a_declined_capture_is_retried_then_paid_by_link_and_the_merchant_is_told(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock, store: Store
) -> None:
    sid = await failed_tab(meter, gateway, ledger)
    async with receiving() as receiver:
        hooks = WebhookConfig(url=receiver.url, secret=SECRET)
        collector = Collector(
            ledger, ProcessorRegistry.single(gateway), CONFIG, Relay(ledger.database, store, hooks)
        )
        report = await collector.sweep(clock.now_ms())
        assert report.opened == 1
        case_id = case_id_of(sid)
        case = await collector.case(case_id)
        assert case is not None
        assert (case["state"], case["decline_reason"], case["amount_minor"]) == (
            "open",
            "insufficient_funds",
            500,
        )
        assert case["payment_method"] == "tok_capture_decline_insufficient_funds"
        assert case["next_retry_at_ms"] == clock.now_ms() + DAY_MS
        # Not due yet: nothing is tried.
        assert (await collector.sweep(clock.now_ms())).retried == 0

        clock.advance(DAY_MS)
        assert (await collector.sweep(clock.now_ms())).retried == 1
        token = await collector.create_link(case_id, clock.now_ms())
        seen, refusal = await collector.open_link(token, clock.now_ms())
        assert refusal is None
        assert seen is not None
        assert seen.state is CaseState.LINK_SENT
        paid = await collector.pay_link(token, "tok_visa", clock.now_ms())
        assert paid.code is ChargeCode.PAID
        assert await Deliverer(store, clock, hooks).deliver_due()

    case = await collector.case(case_id)
    assert case is not None
    assert case["state"] == "paid"
    assert [(a["source"], a["status"]) for a in case["attempts"]] == [
        ("retry", "declined"),
        ("link", "approved"),
    ]
    assert [h["event"] for h in case["history"]] == ["attempt_failed", "send_link", "pay"]
    # The money: off the customer's tab, the shares out of earnings_pending.
    assert await _balance(ledger, journal.customer_tab(sid, "USD")) == 0
    assert await _balance(ledger, journal.earnings_pending("USD")) == 0
    assert await _balance(ledger, journal.processor_clearing("sandbox", "USD")) == 500
    shares = await _balance(ledger, journal.model_payable("roomA", "USD")) + await _balance(
        ledger, journal.model_payable("roomB", "USD")
    )
    assert shares + await _balance(ledger, journal.platform_revenue("USD")) == -500
    assert await _tab_state(ledger, sid) == "collected"
    assert len(_collection_captures(gateway, case_id)) == 1
    # The collected debt is invoiced as a capture is: its lines, documenting the collection.
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT invoice_id, kind, total_minor, capture_id, entry_id FROM invoices"
            " WHERE settlement_id = %s",
            (sid,),
        )
        [invoice] = await cursor.fetchall()
        cursor = await conn.execute(
            "SELECT sum(total_minor) AS total FROM invoice_lines WHERE invoice_id = %s",
            (invoice["invoice_id"],),
        )
        lines = await cursor.fetchone()
    assert (invoice["kind"], invoice["total_minor"], invoice["entry_id"]) == (
        "invoice",
        500,
        f"collection_capture:{case_id}",
    )
    assert [invoice["capture_id"]] == _collection_captures(gateway, case_id)
    assert lines is not None
    assert lines["total"] == 500
    # The accountant's export adds up to the ledger with it.
    async with ledger.database.connection() as conn:
        window = (at(0), at(clock.now_ms() + DAY_MS))
        found = await export.issued(conn, *window)
        booked = await export.ledger_totals(conn, *window)
    assert [i["total_minor"] for i in found] == [500]
    assert export.totals(found) == booked
    # The merchant was told, signed: the failed retry and the payment.
    types = []
    for delivery in receiver.received:
        verify_signature(
            delivery.body,
            delivery.headers["tipmeter-signature"],
            SECRET,
            now_s=clock.now_ms() // 1_000,
        )
        event = orjson.loads(delivery.body)
        types.append(event["type"])
        if event["type"] == collection.ATTEMPT_FAILED:
            assert event["data"]["reason_words"] == "insufficient_funds"
    assert sorted(types) == [collection.ATTEMPT_FAILED, collection.PAID]


async def test_a_never_approve_decline_is_not_retried_and_ends_written_off(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    sid = await failed_tab(meter, gateway, ledger, reason="stolen_card")
    collector = _collector(gateway, ledger)
    report = await collector.sweep(clock.now_ms())
    assert (report.opened, report.retried, report.exhausted) == (1, 0, 1)
    for _ in range(5):
        clock.advance(DAY_MS)
        await collector.sweep(clock.now_ms())
    case = await collector.case(case_id_of(sid))
    assert case is not None
    assert case["state"] == "written_off"
    assert case["attempts"] == []
    assert [h["event"] for h in case["history"]] == ["exhaust", "write_off"]
    assert await _balance(ledger, journal.customer_tab(sid, "USD")) == 0
    assert await _balance(ledger, journal.earnings_pending("USD")) == 0
    assert await _tab_state(ledger, sid) == "written_off"
    assert _collection_captures(gateway, case_id_of(sid)) == []


async def test_a_link_says_plainly_when_it_expired_and_the_case_moves_on(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    sid = await failed_tab(meter, gateway, ledger, reason="expired_card")
    collector = _collector(gateway, ledger)
    await collector.open_cases(clock.now_ms())
    token = await collector.create_link(case_id_of(sid), clock.now_ms(), LinkLimits(expiry_s=3_600))
    clock.advance(3_600_000)
    assert (await collector.open_link(token, clock.now_ms()))[1] is LinkRefusal.EXPIRED
    assert (await collector.pay_link(token, "tok_visa", clock.now_ms())).code is ChargeCode.CLOSED
    assert (await collector.sweep(clock.now_ms())).expired == 1
    case = await collector.case(case_id_of(sid))
    assert case is not None
    assert case["state"] == "expired"


async def test_a_link_past_its_opens_or_its_attempts_can_no_longer_be_used(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    sid = await failed_tab(meter, gateway, ledger, reason="expired_card")
    collector = _collector(gateway, ledger)
    await collector.open_cases(clock.now_ms())
    case_id = case_id_of(sid)
    opens = await collector.create_link(case_id, clock.now_ms(), LinkLimits(opens_max=2))
    assert (await collector.open_link(opens, clock.now_ms()))[1] is None
    assert (await collector.open_link(opens, clock.now_ms()))[1] is None
    assert (await collector.open_link(opens, clock.now_ms()))[1] is LinkRefusal.OPENS_USED

    tries = await collector.create_link(case_id, clock.now_ms(), LinkLimits(failed_max=2))
    for _ in range(2):
        declined = await collector.pay_link(tries, "tok_decline_stolen_card", clock.now_ms())
        assert (declined.code, declined.reason_words) == (
            ChargeCode.DECLINED,
            "card_reported_stolen",
        )
    refused = await collector.pay_link(tries, "tok_visa", clock.now_ms())
    assert refused.code is ChargeCode.CLOSED
    assert (await collector.open_link(tries, clock.now_ms()))[1] is LinkRefusal.ATTEMPTS_USED
    assert (await collector.sweep(clock.now_ms())).exhausted == 1
    assert _collection_captures(gateway, case_id) == []


async def test_forged_and_foreign_tokens_find_nothing(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    sid = await failed_tab(meter, gateway, ledger, reason="expired_card")
    collector = _collector(gateway, ledger)
    await collector.open_cases(clock.now_ms())
    token = await collector.create_link(case_id_of(sid), clock.now_ms())
    link_id, _, signature = token.partition(".")
    forged = f"{link_id}.{'0' * len(signature)}"
    assert (await collector.open_link(forged, clock.now_ms()))[1] is LinkRefusal.NOT_FOUND
    assert (await collector.open_link("nothing", clock.now_ms()))[1] is LinkRefusal.NOT_FOUND
    other = Collector(ledger, ProcessorRegistry.single(gateway), CollectionConfig(link_secret="x"))
    assert (await other.open_link(token, clock.now_ms()))[1] is LinkRefusal.NOT_FOUND
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM pay_links WHERE token_sha256 = %s", (token,)
        )
        row = await cursor.fetchone()
    assert row is not None
    assert row["n"] == 0  # the token itself is never stored


@pytest.mark.parametrize("rounds", [12])
async def test_a_link_paid_while_a_retry_approves_ends_in_exactly_one_charge(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock, rounds: int
) -> None:
    collector = _collector(gateway, ledger)
    gateway.latency_s = 0.005  # calls overlap
    sids = [
        await failed_tab(meter, gateway, ledger, customer=f"c{n}", amounts=(("roomA", 100 + n),))
        for n in range(rounds)
    ]
    await collector.open_cases(clock.now_ms())
    async with ledger.database.connection() as conn:
        # The card on file approves now (the customer's bank has funds again).
        await conn.execute("UPDATE collection_cases SET payment_method = 'tok_visa'")
    tokens = [await collector.create_link(case_id_of(sid), clock.now_ms()) for sid in sids]
    clock.advance(DAY_MS)
    for sid, token in zip(sids, tokens, strict=True):
        results = await asyncio.gather(
            collector.retry(case_id_of(sid), clock.now_ms()),
            collector.pay_link(token, "tok_mastercard", clock.now_ms()),
        )
        codes = sorted(r.code for r in results)
        assert codes.count(ChargeCode.PAID) == 1, codes
        assert set(codes) <= {ChargeCode.PAID, ChargeCode.BUSY, ChargeCode.CLOSED}
        # Later callers find it closed; the sweep does nothing more.
        assert (await collector.retry(case_id_of(sid), clock.now_ms())).code is ChargeCode.CLOSED
        again = await collector.pay_link(token, "tok_visa", clock.now_ms())
        assert again.code is ChargeCode.CLOSED
        assert len(_collection_captures(gateway, case_id_of(sid))) == 1
        assert await _balance(ledger, journal.customer_tab(sid, "USD")) == 0
    await collector.sweep(clock.now_ms())
    assert all(len(_collection_captures(gateway, case_id_of(sid))) == 1 for sid in sids)


async def test_an_attempt_the_processor_did_not_answer_is_run_again_by_its_number(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    sid = await failed_tab(meter, gateway, ledger)
    collector = _collector(gateway, ledger)
    await collector.open_cases(clock.now_ms())
    token = await collector.create_link(case_id_of(sid), clock.now_ms())
    gateway.inject("capture", Fault.TIMEOUT_AFTER_COMMIT)
    first = await collector.pay_link(token, "tok_visa", clock.now_ms())
    assert first.code is ChargeCode.UNAVAILABLE
    # While its outcome is unknown, nothing else may charge the debt.
    assert (await collector.pay_link(token, "tok_visa", clock.now_ms())).code is ChargeCode.BUSY
    assert (await collector.sweep(clock.now_ms())).paid == 1
    case = await collector.case(case_id_of(sid))
    assert case is not None
    assert case["state"] == "paid"
    assert [a["attempt_no"] for a in case["attempts"]] == [1]
    assert len(_collection_captures(gateway, case_id_of(sid))) == 1


async def test_an_outbox_row_queued_but_not_marked_is_relayed_again_and_delivered_once(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock, store: Store
) -> None:
    sid = await failed_tab(meter, gateway, ledger, reason="stolen_card")
    collector = _collector(gateway, ledger)  # no relay of its own: the rows wait in the outbox
    assert (await collector.sweep(clock.now_ms())).exhausted == 1
    async with receiving() as receiver:
        hooks = WebhookConfig(url=receiver.url, secret=SECRET)
        # A relay that died after queueing the event, before its mark committed:
        async with (
            ledger.database.connection() as conn,
            conn.transaction(force_rollback=True),
        ):
            [pending] = await outbox.unrelayed(conn, 10)
            code = await webhooks.enqueue(
                store, hooks, pending.event_type, pending.subject, pending.data, pending.created_ms
            )
            assert code is SettleCode.APPLIED
        relay = Relay(ledger.database, store, hooks)
        assert await relay.relay(clock.now_ms()) == 1  # queued again: the queue says duplicate
        assert await relay.relay(clock.now_ms()) == 0
        async with ledger.database.connection() as conn:
            assert await outbox.count_unrelayed(conn) == 0
        assert (await Deliverer(store, clock, hooks).deliver_due()).delivered == 1
        assert (await Deliverer(store, clock, hooks).deliver_due()).attempts == 0
    [delivery] = receiver.received
    event = orjson.loads(delivery.body)
    assert (event["id"], event["type"]) == (
        webhooks.event_id(collection.EXHAUSTED, case_id_of(sid)),
        collection.EXHAUSTED,
    )
