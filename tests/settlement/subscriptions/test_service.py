"""Subscriptions end to end on a real PostgreSQL and the sandbox: sign-up, renewals, trials,
plan changes, cancellations, fixed terms, bonus periods, dunning and its recovery."""

from __future__ import annotations

from settlement.ledger import journal
from settlement.ledger.journal import Account, AccountKind
from settlement.ledger.ledger import Ledger
from settlement.subscriptions.lifecycle import SubState
from settlement.subscriptions.proration import prorate
from settlement.subscriptions.service import CancelMode, SubCode
from tests.settlement.subscriptions.helpers import DAY_MS, World, plan, signup


async def _state(world: World, sid: str) -> SubState:
    sub = await world.subs.read(sid)
    assert sub is not None
    return sub.state


async def test_a_membership_is_charged_at_signup_and_renewed_each_month(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    created = await world.subs.create(signup("s1"), world.clock.now_ms())
    assert created.code is SubCode.APPLIED
    await world.run()
    await world.advance_days(62)
    view = await world.subs.view("s1")
    assert view is not None
    assert view["state"] == "active"
    assert [p["status"] for p in view["periods"]] == ["paid", "paid", "paid"]
    # Anchored on 31 January: 28 February, then 31 March again (no drift).
    days = [(p["ends_at_ms"] - p["starts_at_ms"]) // DAY_MS for p in view["periods"]]
    assert days == [28, 31, 30]
    assert len(world.gateway.captures) == 3
    assert {c.idempotency_key for c in world.gateway.captures} == {
        "sub:s1:1:capture",
        "sub:s1:2:capture",
        "sub:s1:3:capture",
    }
    found = await world.subs.invoices("s1")
    assert [i["number"] for i in found] == [1, 2, 3]
    # Tax-inclusive 10.00 USD in Germany (19 %): 8.40 net + 1.60 tax.
    assert (found[0]["net_minor"], found[0]["tax_minor"], found[0]["total_minor"]) == (
        840,
        160,
        1000,
    )
    assert await ledger.account_balance(journal.processor_clearing("sandbox", "USD")) == 3000
    assert await ledger.account_balance(Account(AccountKind.TAX_PAYABLE, "USD")) == -480
    assert await ledger.account_balance(journal.platform_revenue("USD")) == -2520


async def test_a_fan_club_trial_then_the_models_share(ledger: Ledger) -> None:
    world = World(ledger)
    club = plan(
        "fan-anna",
        kind="fan_club",
        room="anna",
        model_share_bp=6000,
        trial_days=7,
        tax_inclusive=False,
        features=["dm", "photos"],
        trial_excludes=["dm"],
    )
    await world.subs.put_plan(club, world.clock.now_ms())
    await world.subs.create(signup("f1", "fan-anna", country="US"), world.clock.now_ms())
    await world.run()
    view = await world.subs.view("f1")
    assert view is not None
    assert view["state"] == "trialing"
    assert view["features"] == ["photos"]
    assert world.gateway.captures == []
    await world.advance_days(7)
    view = await world.subs.view("f1")
    assert view is not None
    assert view["state"] == "active"
    assert view["features"] == ["dm", "photos"]
    assert [c.amount_minor for c in world.gateway.captures] == [1000]
    assert await ledger.account_balance(journal.model_payable("anna", "USD")) == -600
    assert await ledger.account_balance(journal.platform_revenue("USD")) == -400


async def test_an_upgrade_is_prorated_on_the_next_invoice(ledger: Ledger) -> None:
    world = World(ledger)
    now = world.clock.now_ms()
    await world.subs.put_plan(plan("silver", rank=1), now)
    await world.subs.put_plan(plan("gold2", rank=2, prices={"USD": {"price_minor": 2000}}), now)
    await world.subs.create(signup("u1", "silver"), now)
    await world.run()
    await world.advance_days(10)
    changed = await world.subs.change_plan("u1", "gold2", world.clock.now_ms())
    assert changed.code is SubCode.APPLIED
    sub = changed.subscription
    assert sub is not None
    length = sub.period_end_ms - sub.period_start_ms
    expected = prorate(1000, 2000, sub.period_end_ms - world.clock.now_ms(), length)
    assert sub.adjustment_minor == expected.net_minor
    await world.advance_days(20)
    found = await world.subs.invoices("u1")
    assert [i["total_minor"] for i in found] == [1000, 2000 + expected.net_minor]
    assert [line["total_minor"] for line in found[1]["lines"]] == [2000, expected.net_minor]


async def test_cancel_at_period_end_and_now(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(signup("c1"), world.clock.now_ms())
    await world.subs.create(signup("c2"), world.clock.now_ms())
    await world.run()
    assert (
        await world.subs.cancel("c1", CancelMode.PERIOD_END, world.clock.now_ms())
    ).code is SubCode.APPLIED
    assert (
        await world.subs.cancel("c2", CancelMode.NOW, world.clock.now_ms())
    ).code is SubCode.APPLIED
    assert await _state(world, "c2") is SubState.CANCELLED
    await world.advance_days(27)
    assert await _state(world, "c1") is SubState.ACTIVE
    await world.advance_days(2)
    assert await _state(world, "c1") is SubState.CANCELLED
    assert len(world.gateway.captures) == 2  # one period each, no renewal


async def test_a_fixed_term_expires_and_a_bonus_period_is_free(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(
        plan("term", period={"unit": "day", "length": 10}, term_periods=4, free_every_n=3),
        world.clock.now_ms(),
    )
    await world.subs.create(signup("t1", "term"), world.clock.now_ms())
    await world.run()
    await world.advance_days(45)
    view = await world.subs.view("t1")
    assert view is not None
    assert view["state"] == "expired"
    assert [p["status"] for p in view["periods"]] == ["paid", "paid", "free", "paid"]
    assert len(world.gateway.captures) == 3


async def test_a_declined_renewal_is_dunned_restricted_and_recovered(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(
        signup("d1", card="tok_decline_insufficient_funds"), world.clock.now_ms()
    )
    await world.run()
    assert await _state(world, "d1") is SubState.PAST_DUE
    await world.advance_days(8)
    assert await _state(world, "d1") is SubState.RESTRICTED
    view = await world.subs.view("d1")
    assert view is not None
    assert view["features"] == []
    assert view["periods"][0]["attempts"] == 5  # the first, then retries on days 1, 3, 5, 7
    await world.subs.update_card("d1", "tok_visa", "2030-01", world.clock.now_ms())
    await world.run()
    assert await _state(world, "d1") is SubState.ACTIVE
    assert len(world.gateway.captures) == 1


async def test_a_never_retry_decline_is_not_retried_and_cancels(ledger: Ledger) -> None:
    world = World(ledger)
    await world.subs.put_plan(plan(), world.clock.now_ms())
    await world.subs.create(signup("n1", card="tok_decline_stolen_card"), world.clock.now_ms())
    await world.run()
    await world.advance_days(15)
    view = await world.subs.view("n1")
    assert view is not None
    assert view["state"] == "cancelled"
    assert view["periods"][0]["attempts"] == 1
    assert view["periods"][0]["status"] == "void"
