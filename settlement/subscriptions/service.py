"""Subscriptions as the API uses them: create, change plan, cancel, pause and resume, update the
card, read.

Each operation is one transaction with the subscription read ``FOR UPDATE``; the state it moves
to is decided by the lifecycle table; business outcomes are :class:`SubCode` values. Charges are
never made here: creating a subscription begins its first period, due at once (or a free
trial), and :class:`~settlement.subscriptions.scheduler.Renewals` charges it — the API runs the
scheduler for that one subscription right after, so the answer shows the first charge.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import psycopg

from metering.store import Store
from settlement.gateway import GatewayError
from settlement.ledger.db import Database
from settlement.ledger.times import at
from settlement.processors.registry import ProcessorRegistry
from settlement.processors.routing import NoProcessor, RouteRequest
from settlement.subscriptions import allowances, invoices, pricing, store
from settlement.subscriptions.config import SubscriptionsConfig
from settlement.subscriptions.lifecycle import (
    ENTITLED,
    PAUSABLE,
    TERMINAL,
    SubEvent,
    SubState,
)
from settlement.subscriptions.periods import DAY_MS, period_bounds
from settlement.subscriptions.plans import Plan
from settlement.subscriptions.proration import prorate
from settlement.subscriptions.scheduler import begin_period, bounds_of
from settlement.subscriptions.store import Subscription

_CARD_EXPIRES: Final = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


class SubCode(StrEnum):
    """How an operation ended."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # created before with this id: the same subscription
    NOT_FOUND = "not_found"
    PLAN_UNKNOWN = "plan_unknown"
    CURRENCY_NOT_SOLD = "currency_not_sold"  # the plan has no price in the currency
    ALREADY_SUBSCRIBED = "already_subscribed"  # a live subscription to the plan exists
    NO_PROCESSOR = "no_processor"
    NOT_ALLOWED = "not_allowed"  # the lifecycle table forbids it in the current state
    PLAN_INCOMPATIBLE = "plan_incompatible"  # another kind, room or period length
    CHARGE_IN_FLIGHT = "charge_in_flight"  # a charge is being made: ask again shortly
    ITEMS_INVALID = "items_invalid"  # a quantity or add-ons the plan does not offer


class CancelMode(StrEnum):
    """When a cancellation takes effect."""

    NOW = "now"
    PERIOD_END = "period_end"
    NOTICE = "notice"  # at the first period end after the plan's notice period


@dataclass(frozen=True, slots=True)
class NewSubscription:
    """What a sign-up carries (the card was entered on the processor's own page)."""

    subscription_id: str
    customer: str
    plan_id: str
    currency: str
    payment_method: str
    country: str
    country_evidence: str
    email: str = ""
    language: str = "en"
    card_expires: str = ""
    processor: str = ""
    #: What a tiered plan counts, and the add-ons ``(addon_id, quantity)``.
    quantity: int = 1
    addons: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Result:
    """An operation's code and the subscription after it (None when there is none)."""

    code: SubCode
    subscription: Subscription | None = None


class Subscriptions:
    """Create, change, cancel and read subscriptions in the ledger database."""

    def __init__(
        self,
        database: Database,
        processors: ProcessorRegistry,
        config: SubscriptionsConfig | None = None,
        meter_store: Store | None = None,
    ) -> None:
        self.database = database
        self.processors = processors
        self.config = config if config is not None else SubscriptionsConfig()
        #: The meter's Redis, to read what open tabs have used of an allowance so far (None:
        #: only settled tabs count).
        self.meter_store = meter_store

    async def put_plan(self, plan: Plan, now_ms: int) -> bool:
        """Create a plan (False: one of that id exists; plans are never edited)."""
        async with self.database.connection() as conn:
            return await store.put_plan(conn, plan, now_ms)

    async def plan(self, plan_id: str) -> Plan | None:
        """A plan, or None."""
        async with self.database.connection() as conn:
            return await store.read_plan(conn, plan_id)

    async def plans(self) -> list[Plan]:
        """Every plan."""
        async with self.database.connection() as conn:
            return await store.list_plans(conn)

    async def create(self, new: NewSubscription, now_ms: int) -> Result:
        """Sign a customer up: the first period begins (the trial, or period 1 due now)."""
        async with self.database.connection() as conn:
            plan = await store.read_plan(conn, new.plan_id)
            found = await store.read(conn, new.subscription_id)
        if found is not None:
            return Result(SubCode.DUPLICATE, found)
        if plan is None:
            return Result(SubCode.PLAN_UNKNOWN)
        if plan.price(new.currency) is None:
            return Result(SubCode.CURRENCY_NOT_SOLD)
        if pricing.items_refused(plan, new.quantity, new.addons) is not None:
            return Result(SubCode.ITEMS_INVALID)
        processor = self._route(new)
        if processor is None:
            return Result(SubCode.NO_PROCESSOR)
        if plan.trial_days:
            state, anchor = SubState.TRIALING, now_ms + plan.trial_days * DAY_MS
            number, starts, ends = 0, now_ms, anchor
        else:
            state, anchor = SubState.ACTIVE, now_ms
            number = 1
            starts, ends = period_bounds(anchor, plan.period_unit, plan.period_length, 1)
        sub = Subscription(
            subscription_id=new.subscription_id,
            customer=new.customer,
            plan_id=plan.plan_id,
            currency=new.currency,
            processor=processor,
            payment_method=new.payment_method,
            card_expires=new.card_expires,
            card_notice_for=0,
            country=new.country.upper(),
            country_evidence=new.country_evidence,
            email=new.email,
            language=new.language,
            state=state,
            started_at_ms=now_ms,
            anchor_ms=anchor,
            period_no=number,
            period_start_ms=starts,
            period_end_ms=ends,
            paid_periods=0,
            adjustment_minor=0,
            cancel_at_ms=0,
            cancel_mode="",
            past_due_since_ms=0,
            next_action_at_ms=now_ms,
            lease_until_ms=0,
            ended_at_ms=0,
            updated_at_ms=now_ms,
            quantity=new.quantity,
            addons=tuple(sorted(new.addons)),
        )
        try:
            async with self.database.connection() as conn, conn.transaction():
                if not await store.insert(conn, sub):
                    again = await store.read(conn, new.subscription_id)
                    return Result(SubCode.DUPLICATE, again)
                await conn.execute(
                    """
                    INSERT INTO subscription_events (subscription_id, seq, event, from_state,
                                                     to_state, detail, at)
                    VALUES (%s, 1, 'create', '', %s, %s, %s)
                    """,
                    (sub.subscription_id, state.value, plan.plan_id, at(now_ms)),
                )
                sub, period = await begin_period(
                    conn, sub, plan, number, starts, ends, now_ms, self.config
                )
                if period.status == "free":
                    sub = dataclasses.replace(sub, next_action_at_ms=ends)
                await store.save(conn, sub)
        except psycopg.errors.UniqueViolation:
            return Result(SubCode.ALREADY_SUBSCRIBED)
        return Result(SubCode.APPLIED, sub)

    def _route(self, new: NewSubscription) -> str | None:
        try:
            names = self.processors.route(
                RouteRequest(
                    route_key=new.subscription_id,
                    currency=new.currency,
                    country=new.country.upper(),
                    product="membership",
                    preferred=new.processor,
                )
            )
        except (NoProcessor, GatewayError):  # none serves it, or the chosen one is gone
            return None
        return names[0] if names else None

    async def change_plan(self, subscription_id: str, plan_id: str, now_ms: int) -> Result:
        """Move to another plan now, prorated: the credit for the old plan's unused time and
        the charge for the new plan's remaining time go on the next invoice."""
        try:
            async with self.database.connection() as conn, conn.transaction():
                sub = await store.read(conn, subscription_id, lock=True)
                if sub is None:
                    return Result(SubCode.NOT_FOUND)
                new = await store.read_plan(conn, plan_id)
                if new is None:
                    return Result(SubCode.PLAN_UNKNOWN)
                old = await store.read_plan(conn, sub.plan_id)
                if old is None:  # pragma: no cover - a foreign key holds it
                    return Result(SubCode.PLAN_UNKNOWN)
                refused = _change_refused(sub, old, new)
                if refused is not None:
                    return Result(refused, sub)
                if await _in_flight(conn, sub):
                    return Result(SubCode.CHARGE_IN_FLIGHT, sub)
                # The new plan keeps the quantity when it counts too, and the add-ons it offers.
                quantity = sub.quantity if new.tier_mode is not None else 1
                addons = tuple((a, q) for a, q in sub.addons if a in new.addons)
                if pricing.items_refused(new, quantity, addons) is not None:
                    return Result(SubCode.ITEMS_INVALID, sub)
                priced = sub.period_no < 1 or new.price(sub.currency) is not None
                if not priced:  # pragma: no cover - checked
                    return Result(SubCode.CURRENCY_NOT_SOLD, sub)
                sub = await _record_change(conn, sub, old, new, quantity, addons, now_ms)
                sub = await store.transition(
                    conn, sub, SubEvent.CHANGE, now_ms, f"{sub.plan_id} -> {new.plan_id}"
                )
                sub = dataclasses.replace(
                    sub, plan_id=new.plan_id, quantity=quantity, addons=addons
                )
                await store.save(conn, sub)
        except psycopg.errors.UniqueViolation:
            return Result(SubCode.ALREADY_SUBSCRIBED)
        return Result(SubCode.APPLIED, sub)

    async def change_items(
        self,
        subscription_id: str,
        quantity: int,
        addons: tuple[tuple[str, int], ...],
        now_ms: int,
    ) -> Result:
        """Set the quantity a tiered plan counts and the add-ons now, prorated like a plan
        change: the credit for the old items' unused time and the charge for the new items'
        remaining time (each rounded by the one rule) go on the next invoice."""
        async with self.database.connection() as conn, conn.transaction():
            sub = await store.read(conn, subscription_id, lock=True)
            if sub is None:
                return Result(SubCode.NOT_FOUND)
            plan = await store.read_plan(conn, sub.plan_id)
            if plan is None:  # pragma: no cover - a foreign key holds it
                return Result(SubCode.PLAN_UNKNOWN)
            if sub.state not in (SubState.TRIALING, SubState.ACTIVE):
                return Result(SubCode.NOT_ALLOWED, sub)
            if pricing.items_refused(plan, quantity, addons) is not None:
                return Result(SubCode.ITEMS_INVALID, sub)
            if await _in_flight(conn, sub):
                return Result(SubCode.CHARGE_IN_FLIGHT, sub)
            addons = tuple(sorted(addons))
            sub = await _record_change(conn, sub, plan, plan, quantity, addons, now_ms)
            detail = f"quantity {sub.quantity} -> {quantity}, add-ons {list(addons)}"
            sub = await store.transition(conn, sub, SubEvent.CHANGE, now_ms, detail[:200])
            sub = dataclasses.replace(sub, quantity=quantity, addons=addons)
            await store.save(conn, sub)
        return Result(SubCode.APPLIED, sub)

    async def cancel(self, subscription_id: str, mode: CancelMode, now_ms: int) -> Result:
        """Cancel now, at the period's end, or after the plan's notice period."""
        async with self.database.connection() as conn, conn.transaction():
            sub = await _changeable(conn, subscription_id)
            if isinstance(sub, Result):
                return sub
            if await _in_flight(conn, sub):
                return Result(SubCode.CHARGE_IN_FLIGHT, sub)
            plan = await store.read_plan(conn, sub.plan_id)
            if plan is None:  # pragma: no cover - a foreign key holds it
                return Result(SubCode.PLAN_UNKNOWN)
            if mode is CancelMode.NOW or sub.state not in (SubState.TRIALING, SubState.ACTIVE):
                # Nothing paid to wait for: a past-due membership ends at once.
                period = await store.read_period(conn, subscription_id, sub.period_no)
                if period is not None and period.status == "due":
                    await store.settle_period(conn, subscription_id, sub.period_no, "void", now_ms)
                sub = await store.transition(conn, sub, SubEvent.CANCEL, now_ms, f"cancel {mode}")
                sub = dataclasses.replace(
                    sub,
                    cancel_mode=CancelMode.NOW.value,
                    cancel_at_ms=now_ms,
                    ended_at_ms=now_ms,
                    next_action_at_ms=0,
                    lease_until_ms=0,
                    past_due_since_ms=0,
                    pause_at_ms=0,
                    paused_at_ms=0,
                )
            else:
                cancel_at = sub.period_end_ms
                if mode is CancelMode.NOTICE:
                    earliest = now_ms + plan.notice_days * DAY_MS
                    number = sub.period_no
                    while cancel_at < earliest and number < sub.period_no + 10_000:
                        number += 1
                        cancel_at = bounds_of(sub, plan, max(number, 1))[1]
                # A cancellation supersedes a pause asked for: the membership ends instead.
                sub = dataclasses.replace(
                    sub,
                    cancel_mode=mode.value,
                    cancel_at_ms=cancel_at,
                    pause_at_ms=0,
                    updated_at_ms=now_ms,
                )
            await store.save(conn, sub)
        return Result(SubCode.APPLIED, sub)

    async def pause(self, subscription_id: str, now_ms: int) -> Result:
        """Ask for a pause: it takes effect at the end of the period already paid (or of the
        trial) — the member keeps what was paid for; from then on nothing is charged and the
        plan's features are withheld until :meth:`resume`. Asking again changes nothing."""
        async with self.database.connection() as conn, conn.transaction():
            sub = await _changeable(conn, subscription_id)
            if isinstance(sub, Result):
                return sub
            if sub.state is SubState.PAUSED or sub.pause_at_ms:
                return Result(SubCode.APPLIED, sub)
            if sub.state not in PAUSABLE or sub.cancel_at_ms:
                # Past due: the unpaid period is dunned first; a cancellation asked for: ends.
                return Result(SubCode.NOT_ALLOWED, sub)
            if await _in_flight(conn, sub):
                return Result(SubCode.CHARGE_IN_FLIGHT, sub)
            sub = dataclasses.replace(sub, pause_at_ms=sub.period_end_ms, updated_at_ms=now_ms)
            await store.save(conn, sub)
        return Result(SubCode.APPLIED, sub)

    async def resume(self, subscription_id: str, now_ms: int) -> Result:
        """Resume: a pause asked for and not yet taken is dropped (nothing moves); a paused
        subscription becomes ``active`` and its next period begins now, due at once — that
        period and every later one are counted from this instant (:func:`bounds_of`), so each
        charge date after a pause falls on the resume's day of the month (a monthly plan
        resumed on 10 May renews on 10 June, 10 July …; a plan of N days every N days from it).
        The paused days are neither charged nor given back."""
        async with self.database.connection() as conn, conn.transaction():
            sub = await _changeable(conn, subscription_id)
            if isinstance(sub, Result):
                return sub
            if sub.state in PAUSABLE and sub.pause_at_ms:
                sub = dataclasses.replace(sub, pause_at_ms=0, updated_at_ms=now_ms)
                await store.save(conn, sub)
                return Result(SubCode.APPLIED, sub)
            if sub.state is not SubState.PAUSED:
                return Result(SubCode.NOT_ALLOWED, sub)
            plan = await store.read_plan(conn, sub.plan_id)
            if plan is None:  # pragma: no cover - a foreign key holds it
                return Result(SubCode.PLAN_UNKNOWN)
            number = sub.period_no + 1
            sub = dataclasses.replace(sub, schedule_from_ms=now_ms, schedule_from_period=number)
            starts, ends = bounds_of(sub, plan, number)
            sub = await store.transition(conn, sub, SubEvent.RESUME, now_ms, f"period {number}")
            sub, period = await begin_period(
                conn, sub, plan, number, starts, ends, now_ms, self.config
            )
            sub = dataclasses.replace(sub, paused_at_ms=0, next_action_at_ms=now_ms)
            if period.status == "free":
                sub = dataclasses.replace(
                    sub, paid_periods=sub.paid_periods + 1, next_action_at_ms=ends
                )
            await store.save(conn, sub)
        return Result(SubCode.APPLIED, sub)

    async def update_card(
        self, subscription_id: str, payment_method: str, card_expires: str, now_ms: int
    ) -> Result:
        """A new card on file (entered on the processor's page); a past-due period is retried
        with it at once."""
        async with self.database.connection() as conn, conn.transaction():
            sub = await _changeable(conn, subscription_id)
            if isinstance(sub, Result):
                return sub
            sub = dataclasses.replace(
                sub,
                payment_method=payment_method,
                card_expires=card_expires,
                card_notice_for=0,
                next_action_at_ms=now_ms if sub.past_due_since_ms else sub.next_action_at_ms,
                updated_at_ms=now_ms,
            )
            await store.save(conn, sub)
        return Result(SubCode.APPLIED, sub)

    async def read(self, subscription_id: str) -> Subscription | None:
        """A subscription, or None."""
        async with self.database.connection() as conn:
            return await store.read(conn, subscription_id)

    async def of_customer(self, customer: str, limit: int) -> list[str]:
        """The ids of a customer's subscriptions, newest first, at most ``limit``."""
        async with self.database.connection() as conn:
            return [s.subscription_id for s in await store.of_customer(conn, customer, limit)]

    async def view(self, subscription_id: str) -> dict[str, Any] | None:
        """A subscription as the API shows it: plan, state, features, the current period,
        the next charge, the cancellation, the allowance left, its periods, changes and
        history."""
        async with self.database.connection() as conn:
            sub = await store.read(conn, subscription_id)
            if sub is None:
                return None
            plan = await store.read_plan(conn, sub.plan_id)
            if plan is None:  # pragma: no cover - a foreign key holds it
                return None
            periods = await store.periods(conn, subscription_id)
            changes = await store.changes(conn, subscription_id)
            history = await store.history(conn, subscription_id)
            allowance = await allowances.allowance_left(conn, self.meter_store, sub, plan)
        return subscription_json(sub, plan) | {
            "allowance": allowances.allowance_json(allowance),
            "periods": [
                {
                    "period_no": p.period_no,
                    "plan_id": p.plan_id,
                    "starts_at_ms": p.starts_at_ms,
                    "ends_at_ms": p.ends_at_ms,
                    "total_minor": p.total_minor,
                    "tax_minor": p.tax_minor,
                    "status": p.status,
                    "attempts": p.attempts_n,
                }
                for p in periods
            ],
            "changes": changes,
            "history": history,
        }

    async def invoices(self, subscription_id: str) -> list[dict[str, Any]]:
        """A subscription's invoices, with lines."""
        async with self.database.connection() as conn:
            return await invoices.of_subscription(conn, subscription_id)


def subscription_json(sub: Subscription, plan: Plan) -> dict[str, Any]:
    """The subscription's own fields as the API shows them."""
    renewing = sub.state in (SubState.TRIALING, SubState.ACTIVE)
    ending = bool(sub.cancel_at_ms) and sub.cancel_at_ms <= sub.period_end_ms
    pausing = bool(sub.pause_at_ms)
    ends_by_term = bool(plan.term_periods) and sub.period_no >= plan.term_periods
    price = plan.price(sub.currency)
    return {
        "subscription_id": sub.subscription_id,
        "customer": sub.customer,
        "plan_id": sub.plan_id,
        "plan": plan.to_json(),
        "state": str(sub.state),
        "currency": sub.currency,
        "processor": sub.processor,
        "country": sub.country,
        "features": list(plan.features_in(sub.state is SubState.TRIALING))
        if sub.state in ENTITLED
        else [],
        "period": {
            "period_no": sub.period_no,
            "starts_at_ms": sub.period_start_ms,
            "ends_at_ms": sub.period_end_ms,
        },
        "trial_ends_at_ms": sub.anchor_ms if sub.state is SubState.TRIALING else None,
        "next_charge_at_ms": sub.period_end_ms
        if renewing and not ending and not pausing and not ends_by_term
        else None,
        "next_price_minor": pricing.recurring_minor(plan, sub.currency, sub.quantity, sub.addons)
        if price is not None
        else None,
        "quantity": sub.quantity,
        "addons": [{"addon_id": a, "quantity": q} for a, q in sub.addons],
        "adjustment_minor": sub.adjustment_minor,
        "paid_periods": sub.paid_periods,
        "cancel_at_ms": sub.cancel_at_ms or None,
        "cancel_mode": sub.cancel_mode or None,
        "past_due_since_ms": sub.past_due_since_ms or None,
        "pause_at_ms": sub.pause_at_ms or None,
        "paused_at_ms": sub.paused_at_ms or None,
        "started_at_ms": sub.started_at_ms,
        "ended_at_ms": sub.ended_at_ms or None,
        "updated_at_ms": sub.updated_at_ms,
    }


def _change_refused(sub: Subscription, old: Plan, new: Plan) -> SubCode | None:
    if sub.state not in (SubState.TRIALING, SubState.ACTIVE):
        return SubCode.NOT_ALLOWED
    if new.plan_id == old.plan_id:
        return SubCode.NOT_ALLOWED
    if new.price(sub.currency) is None:
        return SubCode.CURRENCY_NOT_SOLD
    if (new.kind, new.room, new.period_unit, new.period_length) != (
        old.kind,
        old.room,
        old.period_unit,
        old.period_length,
    ):
        return SubCode.PLAN_INCOMPATIBLE
    return None


async def _changeable(conn: Any, subscription_id: str) -> Subscription | Result:
    """The subscription, locked, while it can still change; otherwise the result to answer:
    ``not_found``, or ``not_allowed`` once it has ended."""
    sub = await store.read(conn, subscription_id, lock=True)
    if sub is None:
        return Result(SubCode.NOT_FOUND)
    if sub.state in TERMINAL:
        return Result(SubCode.NOT_ALLOWED, sub)
    return sub


async def _record_change(
    conn: Any,
    sub: Subscription,
    old: Plan,
    new: Plan,
    quantity: int,
    addons: tuple[tuple[str, int], ...],
    now_ms: int,
) -> Subscription:
    """Write the change row of a plan or items change and return ``sub`` with its adjustment.

    In a paid period the credit for the old items' unused time and the charge for the new
    items' remaining time (each rounded by the one rule) go on the next invoice; in the trial
    nothing is charged yet, so the change is free."""
    if sub.period_no < 1:
        await store.insert_change(conn, sub, new.plan_id, 0, 1, 0, 0, now_ms)
        return sub
    length = sub.period_end_ms - sub.period_start_ms
    remaining = min(max(sub.period_end_ms - now_ms, 0), length)
    lines = prorate(
        pricing.recurring_minor(old, sub.currency, sub.quantity, sub.addons),
        pricing.recurring_minor(new, sub.currency, quantity, addons),
        remaining,
        length,
    )
    await store.insert_change(
        conn,
        sub,
        new.plan_id,
        remaining,
        length,
        lines.credit_minor,
        lines.charge_minor,
        now_ms,
    )
    return dataclasses.replace(sub, adjustment_minor=sub.adjustment_minor + lines.net_minor)


async def _in_flight(conn: Any, sub: Subscription) -> bool:
    tried = await store.attempts(conn, sub.subscription_id, sub.period_no)
    return any(a.status in ("pending", "unknown") for a in tried)


def valid_card_expires(value: str) -> bool:
    """Whether ``value`` is a card expiry month (``YYYY-MM``) or empty."""
    return value == "" or _CARD_EXPIRES.fullmatch(value) is not None
