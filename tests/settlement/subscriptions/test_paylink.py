"""A past-due period paid through a collection pay link, on a real PostgreSQL and the sandbox:
one charge per period whatever races (a dunning retry in flight, a period paid meanwhile), the
period's own entry and invoice, no collection entries."""

from __future__ import annotations

import dataclasses

from settlement.collection.collector import ChargeCode, CollectionConfig, Collector
from settlement.ledger.ledger import Ledger
from settlement.subscriptions import store
from settlement.subscriptions.lifecycle import SubState
from settlement.subscriptions.scheduler import attempt_key
from settlement.subscriptions.store import Attempt
from tests.settlement.subscriptions.helpers import World, plan, signup

DECLINES = "tok_decline_insufficient_funds"


async def _past_due(world: World, sid: str) -> tuple[Collector, str, str]:
    """A past-due subscription ``sid``, its membership case and a link's token."""
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(signup(sid, card=DECLINES), world.clock.now_ms())
    await world.run()
    sub = await world.subs.read(sid)
    assert sub is not None
    assert sub.state is SubState.PAST_DUE
    collector = Collector(
        world.ledger,
        world.processors,
        CollectionConfig(link_secret="test-secret"),
        renewals=world.renewals,
    )
    opened = [
        await collector.open_membership(
            subscription_id=sid,
            period_no=1,
            customer=sub.customer,
            currency=sub.currency,
            amount_minor=1000,
            processor=sub.processor,
            language="en",
            now_ms=world.clock.now_ms(),
        )
        for _ in range(2)
    ]
    case_id, again = opened
    assert again == case_id  # one case per period
    return collector, case_id, await collector.create_link(case_id, world.clock.now_ms())


async def _entries(ledger: Ledger, *ids: str) -> list[str]:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute(
            "SELECT entry_id FROM journal_entries WHERE entry_id = ANY(%s) ORDER BY entry_id",
            (list(ids),),
        )
        return [row["entry_id"] for row in await cursor.fetchall()]


async def test_a_link_waits_for_a_dunning_retry_in_flight_then_pays_the_period_once(
    ledger: Ledger,
) -> None:
    world = World(ledger)
    collector, case_id, token = await _past_due(world, "pl1")
    now = world.clock.now_ms()
    # A dunning retry of the card on file is in flight (a worker claimed it).
    retry = Attempt("pl1", 1, 2, attempt_key("pl1", 1, 2), DECLINES, 1000, "pending", "", "", "",
                    now, 0)  # fmt: skip
    async with ledger.database.connection() as conn, conn.transaction():
        await store.insert_attempt(conn, retry)
        sub = await store.read(conn, "pl1", lock=True)
        assert sub is not None
        # Its worker died: the claim has lapsed, the next worker runs it again.
        await store.save(conn, dataclasses.replace(sub, next_action_at_ms=now, lease_until_ms=0))
    busy = await collector.pay_link(token, "tok_visa", now)
    assert busy.code is ChargeCode.BUSY
    assert world.gateway.captures == []
    await world.run()  # the retry runs (declined); the link's attempt is the sweep's
    paid = await collector.pay_link(token, "tok_visa", world.clock.now_ms())
    assert paid.code is ChargeCode.PAID
    await collector.sweep(world.clock.now_ms())  # nothing left to run: no second charge
    assert [c.idempotency_key for c in world.gateway.captures] == [
        f"collect:{case_id}:{paid.attempt_no}:capture"
    ]
    sub = await world.subs.read("pl1")
    assert sub is not None
    assert (sub.state, sub.paid_periods, sub.past_due_since_ms) == (SubState.ACTIVE, 1, 0)
    assert await _entries(ledger, "subscription_charge:pl1:1", f"collection_capture:{case_id}") == [
        "subscription_charge:pl1:1"
    ]
    assert [i["period_no"] for i in await world.subs.invoices("pl1")] == [1]
    case = await collector.case(case_id)
    assert case is not None
    assert (case["state"], case["capture_id"]) == ("paid", paid.capture_id)


async def test_a_period_paid_by_a_new_card_closes_its_link_without_a_second_charge(
    ledger: Ledger,
) -> None:
    world = World(ledger)
    collector, case_id, token = await _past_due(world, "pl2")
    await world.subs.update_card("pl2", "tok_visa", "", world.clock.now_ms())
    await world.run()
    assert len(world.gateway.captures) == 1
    late = await collector.pay_link(token, "tok_mastercard", world.clock.now_ms())
    assert late.code is ChargeCode.PAID  # the debt is settled: by the card on file
    assert len(world.gateway.captures) == 1
    view = await world.subs.view("pl2")
    assert view is not None
    assert [p["status"] for p in view["periods"]] == ["paid"]
    assert late.capture_id == world.gateway.captures[0].capture_id
    assert await _entries(ledger, f"collection_capture:{case_id}") == []
