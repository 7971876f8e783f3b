"""What one period of a subscription costs before any proration: the plan's flat price, its
tiers for the subscription's quantity, and the add-ons. Pure.

**Graduated** tiers price each unit in the tier it falls in (with 12 seats and tiers up to 5 at
5.00, up to 10 at 4.00, then 3.00: 5 × 5.00 + 5 × 4.00 + 2 × 3.00); a tier's flat amount is added
once when any unit falls in it. **Volume** tiers price every unit at the tier the whole quantity
falls in (12 seats: 12 × 3.00), plus that tier's flat amount. Add-ons cost their price times
their quantity. Every amount is an integer product: no rounding happens here (proration rounds,
by its one rule, in :mod:`settlement.subscriptions.proration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metering.money import format_minor
from settlement.subscriptions.plans import QUANTITY_MAX, Plan, Price, Tier, TierMode


@dataclass(frozen=True, slots=True)
class Item:
    """One priced item of a period: what an invoice line says, and its amount."""

    description: str
    amount_minor: int


def tier_items(
    mode: TierMode, tiers: Sequence[Tier], quantity: int, unit: str, currency: str
) -> list[Item]:
    """The items the tiers make of ``quantity`` (none of 0 amount)."""
    items: list[Item] = []
    if mode is TierMode.VOLUME:
        tier = next((t for t in tiers if t.up_to == 0 or quantity <= t.up_to), tiers[-1])
        amount = quantity * tier.unit_minor + tier.flat_minor
        if amount:
            each = format_minor(tier.unit_minor, currency)
            flat = f" + {format_minor(tier.flat_minor, currency)}" if tier.flat_minor else ""
            items.append(Item(f"{quantity} {unit} × {each}{flat}", amount))
        return items
    below = 0
    for tier in tiers:
        top = quantity if tier.up_to == 0 else min(quantity, tier.up_to)
        units = top - below
        if units <= 0:
            break
        amount = units * tier.unit_minor + tier.flat_minor
        if amount:
            each = format_minor(tier.unit_minor, currency)
            flat = f" + {format_minor(tier.flat_minor, currency)}" if tier.flat_minor else ""
            items.append(Item(f"{unit} {below + 1}–{top}: {units} × {each}{flat}", amount))
        below = top
    return items


def plan_items(plan: Plan, price: Price, quantity: int, currency: str) -> list[Item]:
    """The plan's own items of a paid period: the flat price (when not 0), then the tiers."""
    items = []
    if price.price_minor:
        items.append(Item(plan.plan_id, price.price_minor))
    if plan.tier_mode is not None and price.tiers:
        items += [
            Item(f"{plan.plan_id}: {item.description}", item.amount_minor)
            for item in tier_items(plan.tier_mode, price.tiers, quantity, plan.tier_unit, currency)
        ]
    return items


def addon_items(plan: Plan, addons: Sequence[tuple[str, int]], currency: str) -> list[Item]:
    """The add-ons' items (an add-on the plan does not offer costs nothing: a plan change
    leaves it behind)."""
    items = []
    for addon_id, quantity in addons:
        addon = plan.addons.get(addon_id)
        if addon is None or quantity <= 0:
            continue
        each = addon.prices[currency]
        name = addon.name or addon_id
        items.append(
            Item(f"add-on {name}: {quantity} × {format_minor(each, currency)}", quantity * each)
        )
    return items


def recurring_minor(
    plan: Plan, currency: str, quantity: int = 1, addons: Sequence[tuple[str, int]] = ()
) -> int:
    """What a paid period costs before prorations and bonuses: the plan's items and the
    add-ons' (what a change of plan, quantity or add-ons prorates)."""
    price = plan.price(currency)
    if price is None:
        raise ValueError(f"plan {plan.plan_id} is not sold in {currency}")
    return sum(i.amount_minor for i in plan_items(plan, price, quantity, currency)) + sum(
        i.amount_minor for i in addon_items(plan, addons, currency)
    )


def items_refused(plan: Plan, quantity: int, addons: Sequence[tuple[str, int]]) -> str | None:
    """Why ``quantity`` and ``addons`` do not fit ``plan`` (None: they do)."""
    if not 1 <= quantity <= QUANTITY_MAX:
        return f"quantity must be within 1..{QUANTITY_MAX}"
    if quantity != 1 and plan.tier_mode is None:
        return f"plan {plan.plan_id} counts nothing: quantity is 1"
    seen = set()
    for addon_id, count in addons:
        addon = plan.addons.get(addon_id)
        if addon is None:
            return f"plan {plan.plan_id} has no add-on {addon_id}"
        if addon_id in seen:
            return f"add-on {addon_id} is named twice"
        seen.add(addon_id)
        if not 1 <= count <= addon.quantity_max:
            return f"add-on {addon_id}: quantity within 1..{addon.quantity_max}"
    return None
