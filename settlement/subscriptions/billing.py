"""What a period costs: its invoice lines, taxed, and the adjustments it takes over. Pure.

A period's lines are, in order: the plan's price for the period (the trial price for period 0),
then its tiers for the subscription's quantity (:mod:`settlement.subscriptions.pricing`); a
bonus line taking the plan's part back when the plan's bonus rule makes the period free; the
add-ons (billed from period 1, bonus or not); and the pending prorations of plan, quantity and
add-on changes (positive: owed; negative: a credit). A credit never takes a total
below zero: what it cannot use here carries on to the next period. Each line is taxed on its own
(:func:`settlement.subscriptions.tax.tax_line`); the period's net, tax and total are the sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from settlement.ledger.times import at
from settlement.subscriptions import pricing
from settlement.subscriptions.plans import Plan
from settlement.subscriptions.tax import TaxedLine, tax_line


@dataclass(frozen=True, slots=True)
class Bill:
    """A period's lines and totals, and the adjustment left for later periods."""

    lines: list[dict[str, Any]]
    net_minor: int
    tax_minor: int
    total_minor: int
    adjustment_used_minor: int
    adjustment_left_minor: int


def bill_period(
    plan: Plan,
    currency: str,
    period_no: int,
    starts_at_ms: int,
    ends_at_ms: int,
    *,
    adjustment_minor: int,
    tax_rate_bp: int,
    quantity: int = 1,
    addons: Sequence[tuple[str, int]] = (),
) -> Bill:
    """The bill of period ``period_no`` (0: the trial) of ``plan`` in ``currency``, for
    ``quantity`` (what a tiered plan counts) and ``addons`` (``(addon_id, quantity)``)."""
    price = plan.price(currency)
    if price is None:
        raise ValueError(f"plan {plan.plan_id} is not sold in {currency}")
    span = f"{at(starts_at_ms).date().isoformat()} – {at(ends_at_ms).date().isoformat()}"
    amounts: list[tuple[str, int]] = []
    if period_no == 0:
        if price.trial_price_minor:
            amounts.append((f"{plan.plan_id} trial, {span}", price.trial_price_minor))
    else:
        own = pricing.plan_items(plan, price, quantity, currency)
        for number, item in enumerate(own):
            # The first line names the period, as an invoice of an untiered plan always did.
            where = f", period {period_no}, {span}" if number == 0 else ""
            amounts.append((f"{item.description}{where}", item.amount_minor))
        if plan.is_free_period(period_no):
            amounts.append((f"bonus: period {period_no} free", -sum(i.amount_minor for i in own)))
        amounts += [
            (i.description, i.amount_minor) for i in pricing.addon_items(plan, addons, currency)
        ]
    subtotal = sum(amount for _, amount in amounts)
    # A credit takes the total to zero at most; an amount owed is billed whole.
    used = max(adjustment_minor, -subtotal)
    if used:
        words = "plan changes, prorated" if used > 0 else "credit for plan changes, prorated"
        amounts.append((words, used))
    lines = []
    taxed: list[TaxedLine] = []
    for number, (description, amount) in enumerate(amounts, start=1):
        line = tax_line(amount, tax_rate_bp, inclusive=plan.tax_inclusive)
        taxed.append(line)
        lines.append(
            {
                "line_no": number,
                "description": description,
                "net_minor": line.net_minor,
                "tax_minor": line.tax_minor,
                "total_minor": line.total_minor,
                "tax_rate_bp": tax_rate_bp,
            }
        )
    return Bill(
        lines=lines,
        net_minor=sum(t.net_minor for t in taxed),
        tax_minor=sum(t.tax_minor for t in taxed),
        total_minor=sum(t.total_minor for t in taxed),
        adjustment_used_minor=used,
        adjustment_left_minor=adjustment_minor - used,
    )
