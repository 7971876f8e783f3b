"""Graduated and volume price tiers, add-ons, and their proration on change: the pure rules,
the plan's validation, and a membership billed with them on a real PostgreSQL and the sandbox."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement.ledger.ledger import Ledger
from settlement.subscriptions import pricing
from settlement.subscriptions.errors import PlanInvalid
from settlement.subscriptions.plans import Tier, TierMode, plan_from_json
from settlement.subscriptions.proration import time_share
from settlement.subscriptions.service import NewSubscription, SubCode
from tests.settlement.subscriptions.helpers import World, plan, signup

TIERS = (Tier(5, 500), Tier(10, 400), Tier(0, 300, 1000))


def _team(**fields: Any) -> dict[str, Any]:
    """A monthly team plan: 20.00 flat plus seats on graduated tiers, and two add-ons."""
    data: dict[str, Any] = {
        "plan_id": "team",
        "kind": "site",
        "tiers": {"mode": "graduated", "unit": "seat"},
        "prices": {
            "USD": {
                "price_minor": 2000,
                "tiers": [
                    {"up_to": 5, "unit_minor": 500},
                    {"up_to": 10, "unit_minor": 400},
                    {"up_to": None, "unit_minor": 300, "flat_minor": 1000},
                ],
            }
        },
        "addons": [
            {"addon_id": "hd", "name": "HD archive", "prices": {"USD": 250}, "quantity_max": 3},
            {"addon_id": "dm", "prices": {"USD": 99}},
        ],
    }
    data.update(fields)
    return data


def test_graduated_tiers_price_each_unit_in_its_own_tier() -> None:
    items = pricing.tier_items(TierMode.GRADUATED, TIERS, 12, "seat", "USD")
    assert [(i.description, i.amount_minor) for i in items] == [
        ("seat 1–5: 5 × 5.00 USD", 2500),
        ("seat 6–10: 5 × 4.00 USD", 2000),
        ("seat 11–12: 2 × 3.00 USD + 10.00 USD", 1600),
    ]
    assert [
        i.amount_minor for i in pricing.tier_items(TierMode.GRADUATED, TIERS, 3, "seat", "USD")
    ] == [1500]


def test_volume_tiers_price_every_unit_at_the_tier_of_the_whole_quantity() -> None:
    def amount(quantity: int) -> int:
        return sum(
            i.amount_minor
            for i in pricing.tier_items(TierMode.VOLUME, TIERS, quantity, "seat", "USD")
        )

    assert amount(5) == 5 * 500
    assert amount(6) == 6 * 400
    assert amount(12) == 12 * 300 + 1000


@settings(max_examples=200, derandomize=True)
@given(st.integers(1, 10_000))
def test_graduated_tiers_sum_to_the_units_priced_one_by_one(quantity: int) -> None:
    def unit_price(n: int) -> int:
        return next(t.unit_minor for t in TIERS if t.up_to == 0 or n <= t.up_to)

    items = pricing.tier_items(TierMode.GRADUATED, TIERS, quantity, "seat", "USD")
    flats = 1000 if quantity > 10 else 0
    assert (
        sum(i.amount_minor for i in items)
        == sum(unit_price(n) for n in range(1, quantity + 1)) + flats
    )


def test_a_tiered_plan_with_add_ons_reads_back_the_same_and_prices_them() -> None:
    team = plan_from_json(_team())
    assert plan_from_json(team.to_json()) == team
    assert pricing.recurring_minor(team, "USD", 12, (("hd", 2), ("dm", 1))) == (
        2000 + 2500 + 2000 + 1600 + 2 * 250 + 99
    )
    assert pricing.items_refused(team, 12, (("hd", 4),)) == "add-on hd: quantity within 1..3"
    assert pricing.items_refused(team, 1, (("xx", 1),)) == "plan team has no add-on xx"
    assert pricing.items_refused(plan_from_json({**_team(), "plan_id": "x"}), 0, ()) is not None
    untiered = plan()
    assert pricing.items_refused(untiered, 2, ()) == "plan gold counts nothing: quantity is 1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tiers": {"mode": "stacked"}}, "tiers.mode"),
        (
            {"prices": {"USD": {"price_minor": 0, "tiers": [{"up_to": 5, "unit_minor": 1}]}}},
            "the last tier has no bound",
        ),
        (
            {
                "prices": {
                    "USD": {
                        "price_minor": 0,
                        "tiers": [
                            {"up_to": 5, "unit_minor": 1},
                            {"up_to": 5, "unit_minor": 1},
                            {"up_to": None, "unit_minor": 1},
                        ],
                    }
                }
            },
            "tiers[2].up_to",
        ),
        (
            {"prices": {"USD": {"price_minor": 0, "tiers": [{"up_to": None, "unit_minor": 1.5}]}}},
            "unit_minor and flat_minor",
        ),
        ({"prices": {"USD": {"price_minor": 100}}}, "every price of a tiered plan has tiers"),
        ({"addons": [{"addon_id": "hd", "prices": {"EUR": 250}}]}, "addons.hd.prices"),
        ({"addons": [{"addon_id": "hd", "prices": {"USD": 1}}] * 2}, "distinct id"),
    ],
)
def test_a_broken_tier_or_add_on_is_refused_saying_what_to_change(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(PlanInvalid, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_from_json(_team(**change))
    # A plan without tiers may not give its prices tiers either.
    with pytest.raises(PlanInvalid, match="only a tiered plan"):
        plan_from_json({"plan_id": "p", "prices": {"USD": {"price_minor": 1, "tiers": []}}})


async def test_seats_and_add_ons_are_billed_and_a_change_is_prorated_exactly(
    ledger: Ledger,
) -> None:
    world = World(ledger)
    team = plan_from_json(_team())
    await world.subs.put_plan(team, world.clock.now_ms())
    refused = await world.subs.create(_signup("t0", 3, (("nope", 1),)), world.clock.now_ms())
    assert refused.code is SubCode.ITEMS_INVALID
    created = await world.subs.create(_signup("t1", 7, (("hd", 1),)), world.clock.now_ms())
    assert created.code is SubCode.APPLIED
    await world.run()
    [first] = await world.subs.invoices("t1")
    assert [
        (line["description"].split(",")[0], line["total_minor"]) for line in first["lines"]
    ] == [
        ("team", 2000),
        ("team: seat 1–5: 5 × 5.00 USD", 2500),
        ("team: seat 6–7: 2 × 4.00 USD", 800),
        ("add-on HD archive: 1 × 2.50 USD", 250),
    ]
    assert first["total_minor"] == 5550
    for line in first["lines"]:
        assert line["net_minor"] + line["tax_minor"] == line["total_minor"]

    # Ten days into the 28-day period: 12 seats, two HD archives and DMs.
    await world.advance_days(10)
    sub = await world.subs.read("t1")
    assert sub is not None
    changed = await world.subs.change_items("t1", 12, (("hd", 2), ("dm", 1)), world.clock.now_ms())
    assert changed.code is SubCode.APPLIED
    length = sub.period_end_ms - sub.period_start_ms
    remaining = sub.period_end_ms - world.clock.now_ms()
    old, new = 5550, 2000 + 2500 + 2000 + 1600 + 500 + 99
    net = time_share(new, remaining, length) - time_share(old, remaining, length)
    after = await world.subs.read("t1")
    assert after is not None
    assert (after.quantity, after.addons, after.adjustment_minor) == (
        12,
        (("dm", 1), ("hd", 2)),
        net,
    )
    refused_items = await world.subs.change_items("t1", 12, (("hd", 9),), world.clock.now_ms())
    assert refused_items.code is SubCode.ITEMS_INVALID

    await world.advance_days(20)
    found = await world.subs.invoices("t1")
    assert len(found) == 2
    second = found[1]
    assert second["total_minor"] == new + net
    assert second["lines"][-1]["description"] == "plan changes, prorated"
    assert second["lines"][-1]["total_minor"] == net
    assert len(world.gateway.captures) == 2


def _signup(sid: str, quantity: int, addons: tuple[tuple[str, int], ...]) -> NewSubscription:
    return dataclasses.replace(signup(sid, "team"), quantity=quantity, addons=addons)
