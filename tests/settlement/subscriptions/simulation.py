"""A seeded year of memberships on a fake clock: sign-ups, trials, upgrades, downgrades,
cancellations (now, at the period's end, after notice), fixed terms, bonus periods, card
expiries and declines (some recovered by a new card, some never), team plans priced by
graduated and volume tiers of seats with add-ons (seats and add-ons changed mid-period), on a
real PostgreSQL and the sandbox processor, with the renewal scheduler run every simulated
twelve hours. Beside them, Post Pay tabs are captured (their settlements recorded in the ledger
as the worker records them) and some refunded, in one or several steps.

It prints its seed and figures and checks, from the processor's and the ledger's side:

- 0 periods charged twice (one capture per period at the processor; one approved attempt);
- 0 due periods missed (every live subscription's current period covers the end; every
  subscription's periods are numbered without a gap and start where the anchor says; nothing
  is left due);
- every proration exact (each line the exact fraction rounded half up of the period's whole
  recurring amount before and after the change — plan, tiers for the seats, add-ons; the net of
  every change billed on an invoice or still pending, to the cent);
- every invoice's and credit note's lines plus tax equal its total;
- invoice numbers gap-free per series (memberships, Post Pay captures, credit notes);
- every Post Pay capture has one invoice, every refund of it one credit note crediting it; the
  credit notes of an invoice never credit more than it, and those of a tab refunded in full
  credit exactly its total and its tax;
- the export's totals (both formats) equal the ledger's; every journal entry balances.

Replay: ``python -m tests.settlement.subscriptions.simulation --subscriptions 10000 --seed N``.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

from metering.clock import FakeClock
from metering.lifecycle import TabState
from metering.money import share_minor
from metering.outcomes import Line, Tab, TabRef
from settlement.gateway import RefundResult
from settlement.ledger import journal
from settlement.ledger.holds import HoldCustomer, HoldRecord
from settlement.ledger.ledger import Ledger
from settlement.ledger.settlements import SettlementFacts
from settlement.ledger.times import at
from settlement.outcomes import SettlementOutcome
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds
from settlement.scripts import SettlementRecord
from settlement.statements import build_statement
from settlement.subscriptions import export, store
from settlement.subscriptions.lifecycle import SubState
from settlement.subscriptions.notices import Notice
from settlement.subscriptions.periods import period_bounds
from settlement.subscriptions.plans import Plan
from settlement.subscriptions.pricing import recurring_minor
from settlement.subscriptions.proration import prorate
from settlement.subscriptions.scheduler import card_valid_until_ms
from settlement.subscriptions.service import CancelMode, NewSubscription, SubCode
from tests.settlement.simulation_cli import run_simulation
from tests.settlement.subscriptions.helpers import DAY_MS, START_MS, World, plan

HOUR_MS: Final = 3_600_000
STEP_MS: Final = 12 * HOUR_MS
#: Chance per live subscription and step that its member changes plan or cancels.
ACTION_P: Final = 0.0012
DAYS: Final = 365
SIGNUP_DAYS: Final = 120
COUNTRIES: Final = ("DE", "DE", "FR", "IT", "LT", "GB", "US", "US", "CH")
#: Chance per step that a Post Pay tab is captured, and that one of them is refunded.
POSTPAY_P: Final = 0.25
REFUND_P: Final = 0.1


def _plans() -> list[Plan]:
    prices = {"USD": 999, "EUR": 899}

    def priced(factor: int) -> dict[str, Any]:
        return {cur: {"price_minor": p * factor // 2} for cur, p in prices.items()}

    return [
        plan("bronze", level="bronze", rank=1, prices=priced(2)),
        plan("silver", level="silver", rank=2, prices=priced(3), free_every_n=13),
        plan("gold", level="gold", rank=3, prices=priced(5), tax_inclusive=False),
        plan("annual", period={"unit": "year", "length": 1}, prices=priced(20)),
        plan(
            "fan-mia",
            kind="fan_club",
            room="mia",
            model_share_bp=6500,
            trial_days=7,
            prices={
                "USD": {"price_minor": 1299, "trial_price_minor": 99},
                "EUR": {"price_minor": 1199},
            },
            features=["dm", "photos"],
            trial_excludes=["dm"],
        ),
        plan(
            "fan-mia-vip",
            kind="fan_club",
            room="mia",
            model_share_bp=6500,
            rank=2,
            trial_days=7,
            prices={"USD": {"price_minor": 2499}, "EUR": {"price_minor": 2299}},
        ),
        plan("six", period={"unit": "day", "length": 30}, term_periods=6, prices=priced(2)),
        plan("notice", notice_days=45, prices=priced(3)),
        _team("team", "graduated", 1500, tax_inclusive=False),
        _team("crew", "volume", 0, rank=1),
    ]


def _team(plan_id: str, mode: str, flat_minor: int, **fields: Any) -> Plan:
    """A monthly plan for a team of seats, tiered in ``mode``, with two add-ons."""

    def tiers(scale: int) -> list[dict[str, Any]]:
        return [
            {"up_to": 5, "unit_minor": 499 * scale // 10},
            {"up_to": 20, "unit_minor": 399 * scale // 10, "flat_minor": 250},
            {"up_to": None, "unit_minor": 333 * scale // 10},
        ]

    return plan(
        plan_id,
        tiers={"mode": mode, "unit": "seat"},
        prices={
            "USD": {"price_minor": flat_minor, "tiers": tiers(10)},
            "EUR": {"price_minor": flat_minor * 9 // 10, "tiers": tiers(9)},
        },
        addons=[
            {"addon_id": "hd", "prices": {"USD": 299, "EUR": 269}, "quantity_max": 3},
            {"addon_id": "dm", "prices": {"USD": 101, "EUR": 91}},
        ],
        **fields,
    )


def _items(rng: random.Random) -> tuple[int, tuple[tuple[str, int], ...]]:
    """A random number of seats and add-ons for a team plan."""
    addons = []
    if rng.random() < 0.5:
        addons.append(("hd", rng.randint(1, 3)))
    if rng.random() < 0.5:
        addons.append(("dm", 1))
    return rng.randint(1, 40), tuple(addons)


#: Members with fixed fates (plan, card, a new card after N days, the card expiring after N
#: days): a fixed term that runs out, a decline recovered by a new card after the features
#: were restricted, a card that expires (its notice, its declines, its replacement), a free
#: trial, a team whose seats and add-ons change mid-period (:data:`STEADY_ITEMS`).
STEADY: Final = (
    ("six", "tok_visa", 0, 0),
    ("bronze", "tok_decline_insufficient_funds", 10, 0),
    ("gold", "tok_visa", 128, 80),
    ("fan-mia", "tok_visa", 0, 0),
    ("team", "tok_visa", 0, 0),
)
#: The steady team's seats and add-ons at sign-up, and after 45 days.
STEADY_ITEMS: Final = ((3, (("dm", 1),)), (17, (("hd", 2),)))

#: Plans a member may change between (same kind, room and period).
FAMILIES: Final = (
    ("bronze", "silver", "gold", "notice"),
    ("fan-mia", "fan-mia-vip"),
    ("team", "crew"),
)
TEAMS: Final = frozenset({"team", "crew"})


@dataclass
class Figures:
    """What happened, and what the checks found (the found counts must be 0)."""

    seed: int
    subscriptions: int
    periods_paid: int = 0
    periods_free: int = 0
    captures: int = 0
    declines: int = 0
    cards_updated: int = 0
    changes: int = 0
    item_changes: int = 0
    cancels: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)
    invoices: int = 0
    totals: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    charged_twice: int = 0
    periods_missed: int = 0
    prorations_off: int = 0
    invoices_off: int = 0
    numbering_gaps: int = 0
    export_off: int = 0
    unbalanced: int = 0
    tabs: int = 0
    refunds: int = 0
    credit_notes: int = 0
    credits_off: int = 0

    def lines(self) -> list[str]:
        """The figures as the test prints them."""
        return [
            f"seed {self.seed}: {self.subscriptions} subscriptions over {DAYS} days",
            f"periods paid {self.periods_paid}, free {self.periods_free}, "
            f"captures {self.captures}, "
            f"declines {self.declines}, cards updated {self.cards_updated}, "
            f"plan changes {self.changes}, seat and add-on changes {self.item_changes}",
            f"cancellations {dict(self.cancels)}; final states {dict(self.states)}",
            f"Post Pay tabs {self.tabs}, refunds {self.refunds}, "
            f"credit notes {self.credit_notes}, credits off {self.credits_off}",
            f"notices {dict(self.notices)}; invoices {self.invoices}; "
            f"totals (net, tax, total) {self.totals}",
            f"charged twice {self.charged_twice}, periods missed {self.periods_missed}, "
            f"prorations off {self.prorations_off}, invoices off {self.invoices_off}, "
            f"numbering gaps {self.numbering_gaps}, export off {self.export_off}, "
            f"unbalanced entries {self.unbalanced}",
        ]


def _step_of(instant_ms: int) -> int:
    """The first simulation step at or after ``instant_ms``."""
    return -(-(instant_ms - START_MS) // STEP_MS)


def _half_up(value: Fraction) -> int:
    return int((value + Fraction(1, 2)).__floor__())


async def simulate(ledger: Ledger, subscriptions: int, seed: int) -> Figures:
    """Run the year and check it (see the module docstring)."""
    rng = random.Random(seed)
    world = World(ledger, FakeClock(START_MS))
    figures = Figures(seed, subscriptions)

    async def count(notice: Notice, _now_ms: int) -> None:
        figures.notices[notice.kind] += 1

    world.renewals.on_notice = count
    plans = {p.plan_id: p for p in _plans()}
    for p in plans.values():
        await world.subs.put_plan(p, START_MS)

    # Sign-ups spread over the first months; each member's fate drawn up front.
    signups: dict[int, list[NewSubscription]] = defaultdict(list)
    fixes: dict[int, list[tuple[str, str]]] = defaultdict(list)  # step -> (sid, new card)
    expiries: dict[int, list[str]] = defaultdict(list)  # step -> sid whose card stops working
    scripted: dict[int, list[str]] = defaultdict(list)  # step -> team whose items change
    steps = DAYS * DAY_MS // STEP_MS
    for n in range(subscriptions):
        sid = f"s{n}"
        step = rng.randrange(SIGNUP_DAYS * DAY_MS // STEP_MS)
        roll = rng.random()
        card, card_expires = "tok_visa", ""
        if roll < 0.05:
            card = "tok_decline_insufficient_funds"
            if rng.random() < 0.6:
                fixes[step + rng.randrange(1, 80)].append((sid, "tok_visa"))
        elif roll < 0.07:
            card = "tok_decline_stolen_card"
        elif roll < 0.17:
            # A card that expires during the year: the network declines it from then on.
            month = at(START_MS + (step + rng.randrange(20, steps)) * STEP_MS)
            card_expires = f"{month.year:04d}-{month.month:02d}"
            expiry_step = _step_of(card_valid_until_ms(card_expires))
            expiries[expiry_step].append(sid)
            if rng.random() < 0.5:
                fixes[expiry_step + rng.randrange(-40, 40)].append((sid, "tok_mastercard"))
        plan_id = rng.choice(list(plans))
        currency = rng.choice(("USD", "EUR"))
        quantity, addons = _items(rng) if plan_id in TEAMS else (1, ())
        if n < len(STEADY):
            # A few members with fixed fates, so that every path is exercised whatever the
            # seed: they never change plan or cancel on their own.
            plan_id, card, fix_after, expires = STEADY[n]
            step, currency, card_expires = n, "EUR", ""
            if plan_id in TEAMS:
                quantity, addons = STEADY_ITEMS[0]
                scripted[step + 45 * DAY_MS // STEP_MS].append(sid)
            if expires:
                month = at(START_MS + expires * DAY_MS)
                card_expires = f"{month.year:04d}-{month.month:02d}"
                expiries[_step_of(card_valid_until_ms(card_expires))].append(sid)
            if fix_after:
                fixes[step + fix_after * DAY_MS // STEP_MS].append((sid, "tok_visa"))
        signups[step].append(
            NewSubscription(
                subscription_id=sid,
                customer=f"c{n}",
                plan_id=plan_id,
                currency=currency,
                payment_method=card,
                country=rng.choice(COUNTRIES),
                country_evidence=rng.choice(("billing_address", "card_country", "ip")),
                email=f"c{n}@example.com",
                language=rng.choice(("en", "de")),
                card_expires=card_expires,
                quantity=quantity,
                addons=addons,
            )
        )
    live: list[str] = []
    tabs: list[TabRef] = []
    refunds_minor = asked = 0
    # What each change was made from and to (the period's whole recurring amount), in order.
    recurring: dict[str, list[tuple[int, int]]] = defaultdict(list)

    def amount_of(sub: store.Subscription) -> int:
        return recurring_minor(plans[sub.plan_id], sub.currency, sub.quantity, sub.addons)

    for step in range(steps):
        now = world.clock.now_ms()
        for new in signups.get(step, []):
            created = await world.subs.create(new, now)
            if created.code is SubCode.APPLIED:
                live.append(new.subscription_id)
        for sid in expiries.get(step, []):
            found = await world.subs.read(sid)
            if found is not None and found.payment_method == "tok_visa":
                await world.subs.update_card(
                    sid, "tok_decline_expired_card", found.card_expires, now
                )
        for sid, card in fixes.get(step, []):
            if (await world.subs.update_card(sid, card, "2031-12", now)).code is SubCode.APPLIED:
                figures.cards_updated += 1
        for sid in scripted.get(step, []):
            found = await world.subs.read(sid)
            assert found is not None
            quantity, addons = STEADY_ITEMS[1]
            changed = await world.subs.change_items(sid, quantity, addons, now)
            if changed.code is SubCode.APPLIED and changed.subscription is not None:
                figures.item_changes += 1
                recurring[sid].append((amount_of(found), amount_of(changed.subscription)))
        # Some members change plan or cancel, at random instants of the step.
        expected = len(live) * ACTION_P
        actions = int(expected) + (rng.random() < expected - int(expected))
        for sid in rng.sample(live, k=min(len(live), actions)):
            if int(sid[1:]) < len(STEADY):
                continue
            found = await world.subs.read(sid)
            if found is None or found.state not in (SubState.ACTIVE, SubState.TRIALING):
                continue
            if found.plan_id in TEAMS and rng.random() < 0.5:
                quantity, addons = _items(rng)
                changed = await world.subs.change_items(sid, quantity, addons, now)
                if changed.code is SubCode.APPLIED and changed.subscription is not None:
                    figures.item_changes += 1
                    recurring[sid].append((amount_of(found), amount_of(changed.subscription)))
            elif rng.random() < 0.6:
                family = next((f for f in FAMILIES if found.plan_id in f), None)
                if family is None:
                    continue
                target = rng.choice([p for p in family if p != found.plan_id])
                changed = await world.subs.change_plan(sid, target, now)
                if changed.code is SubCode.APPLIED and changed.subscription is not None:
                    figures.changes += 1
                    recurring[sid].append((amount_of(found), amount_of(changed.subscription)))
            else:
                mode = rng.choice(list(CancelMode))
                if (await world.subs.cancel(sid, mode, now)).code is SubCode.APPLIED:
                    figures.cancels[str(mode)] += 1
        if rng.random() < POSTPAY_P:
            tabs.append(await _postpay_tab(world, rng, len(tabs), now))
            figures.tabs += 1
        if tabs and rng.random() < REFUND_P:
            refunded = await _refund(world, rng, rng.choice(tabs), asked)
            asked += 1
            figures.refunds += refunded > 0
            refunds_minor += refunded
        await world.renewals.run_due(now)
        world.clock.advance(STEP_MS + rng.randrange(0, 60_000))
    await world.renewals.run_due(world.clock.now_ms())
    await _check(world, plans, figures, recurring, refunds_minor)
    return figures


async def _postpay_tab(world: World, rng: random.Random, n: int, now: int) -> TabRef:
    """A Post Pay tab captured at the sandbox and recorded in the ledger as the worker records
    it: its hold (with the customer's country), tips to two rooms, the one capture."""
    ref = TabRef(f"pp{n}", f"tab{n}")
    currency = rng.choice(("USD", "EUR"))
    cap = 10_000
    hold = await world.gateway.authorize(
        idempotency_key=f"auth:{ref.tab_id}",
        payment_method="tok_visa",
        amount_minor=cap,
        currency=currency,
    )
    country = rng.choice(COUNTRIES)
    await world.ledger.record_hold(
        HoldRecord(
            idempotency_key=f"auth:{ref.tab_id}",
            ref=ref,
            processor="sandbox",
            auth_ref=hold.auth_ref,
            payment_method="tok_visa",
            kind="authorize",
            currency=currency,
            amount_minor=cap,
            expires_at_ms=hold.expires_at_ms,
            recorded_at_ms=now,
            customer=HoldCustomer(country, "card_country", f"pp{n}@example.com"),
        )
    )
    lines = []
    for seq in range(1, rng.randint(1, 5) + 1):
        room, payout = rng.choice((("mia", 6_000), ("zoe", 7_500)))
        amount = rng.randint(25, 1_999)
        lines.append(
            Line(
                "tip",
                f"tip:{ref.tab_id}-{seq}",
                seq,
                now,
                room,
                amount,
                payout,
                share_minor(amount, payout),
            )
        )
    total = sum(line.amount_minor for line in lines)
    key = f"capture:{ref.customer}/{ref.tab_id}"
    captured = await world.gateway.capture(
        idempotency_key=key, auth_ref=hold.auth_ref, amount_minor=total
    )
    tab = Tab(
        ref=ref,
        currency=currency,
        state=TabState.SETTLED,
        cap_minor=cap,
        accrued_minor=total,
        version=len(lines) + 1,
        auth_ref=hold.auth_ref,
        capture_before_ms=hold.expires_at_ms,
        opened_at_ms=now,
        active_at_ms=now,
        processor="sandbox",
        opened_cap_minor=cap,
        payment_method="tok_visa",
        lines=tuple(lines),
    )
    record = SettlementRecord(
        amount_minor=total,
        idempotency_key=key,
        started_at_ms=now,
        attempts=1,
        outcome=SettlementOutcome.CAPTURED,
        outcome_at_ms=now,
        captured_minor=total,
        capture_id=captured.capture_id,
        released_minor=cap - total,
        followups_done=True,
        processor="sandbox",
    )
    facts = SettlementFacts(tab, record, build_statement(tab, record), "sandbox")
    await world.ledger.record_settlement(facts)
    await world.ledger.record_settlement(facts)  # as a repeating worker would: nothing more
    return ref


async def _refund(world: World, rng: random.Random, ref: TabRef, n: int) -> int:
    """Refund part of what is left of a tab (or all of it); what the processor gave back."""
    refunds = Refunds(world.ledger.database, lambda _name: world.gateway, world.clock)
    amount = rng.choice((None, rng.randint(1, 400)))
    answer = await refunds.request(
        RefundRequest(
            f"rf{n}",
            ref,
            Reason.GOODWILL,
            amount_minor=amount,
            override_by="sim",
            override_reason="goodwill",
        )
    )
    if answer.body["status"] != "succeeded":
        return 0
    given = await world.gateway.lookup(f"refund:rf{n}")
    return given.amount_minor if isinstance(given, RefundResult) else 0


async def _check(
    world: World,
    plans: dict[str, Plan],
    figures: Figures,
    recurring: dict[str, list[tuple[int, int]]],
    refunds_minor: int,
) -> None:
    now = world.clock.now_ms()
    captures = world.gateway.captures
    figures.captures = sum(c.idempotency_key.startswith("sub:") for c in captures)
    per_period = Counter(
        ":".join(c.idempotency_key.split(":")[:3]) for c in captures
    )  # sub:<id>:<period>, capture:<customer>/<tab>
    figures.charged_twice = sum(n - 1 for n in per_period.values() if n > 1)
    async with world.ledger.database.connection() as conn:
        cursor = await conn.execute("SELECT subscription_id FROM subscriptions ORDER BY 1")
        sids = [row["subscription_id"] for row in await cursor.fetchall()]
        declined = await conn.execute(
            "SELECT count(*) AS n FROM subscription_attempts WHERE status = 'declined'"
        )
        row = await declined.fetchone()
        figures.declines = int(row["n"]) if row else 0
        billed_adjustments = 0
        pending_adjustments = 0
        for sid in sids:
            sub = await store.read(conn, sid)
            if sub is None:
                continue
            figures.states[str(sub.state)] += 1
            pending_adjustments += sub.adjustment_minor
            periods = await store.periods(conn, sid)
            billed_adjustments += sum(p.adjustment_minor for p in periods)
            figures.periods_paid += sum(p.status == "paid" for p in periods)
            figures.periods_free += sum(p.status == "free" for p in periods)
            numbers = [p.period_no for p in periods]
            if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
                figures.periods_missed += 1
            for p in periods:
                if p.period_no >= 1:
                    # Each period where the anchor puts it (the plan of the period may differ,
                    # but changes keep the period length).
                    bounds = period_bounds(
                        sub.anchor_ms,
                        plans[p.plan_id].period_unit,
                        plans[p.plan_id].period_length,
                        p.period_no,
                    )
                    if bounds != (p.starts_at_ms, p.ends_at_ms):
                        figures.periods_missed += 1
            if sub.next_action_at_ms and sub.next_action_at_ms <= now:
                figures.periods_missed += 1  # something left due
            if sub.state in (SubState.ACTIVE, SubState.TRIALING) and sub.period_end_ms <= now:
                figures.periods_missed += 1
            changes = await store.changes(conn, sid)
            if len(changes) != len(recurring.get(sid, [])):
                figures.prorations_off += 1
                continue
            for change, (old, new) in zip(changes, recurring.get(sid, []), strict=True):
                r, length = change["remaining_ms"], change["period_ms"]
                if change["period_no"] == 0:
                    expected = (0, 0)
                else:
                    expected = (
                        _half_up(Fraction(old * r, length)),
                        _half_up(Fraction(new * r, length)),
                    )
                    lines = prorate(old, new, r, length)
                    if (lines.credit_minor, lines.charge_minor) != expected:
                        figures.prorations_off += 1
                if (change["credit_minor"], change["charge_minor"]) != expected:
                    figures.prorations_off += 1
        cursor = await conn.execute(
            "SELECT coalesce(sum(charge_minor - credit_minor), 0) AS net FROM subscription_changes"
        )
        row = await cursor.fetchone()
        changed_net = int(row["net"]) if row else 0
        if changed_net != billed_adjustments + pending_adjustments:
            figures.prorations_off += 1
        cursor = await conn.execute(
            """
            SELECT i.invoice_id FROM invoices i JOIN invoice_lines l USING (invoice_id)
            GROUP BY i.invoice_id, i.net_minor, i.tax_minor, i.total_minor
            HAVING sum(l.net_minor) <> i.net_minor OR sum(l.tax_minor) <> i.tax_minor
                OR sum(l.total_minor) <> i.total_minor OR i.net_minor + i.tax_minor <> i.total_minor
            """
        )
        figures.invoices_off = len(await cursor.fetchall())
        cursor = await conn.execute(
            "SELECT series, count(*) AS n, min(number) AS lo, max(number) AS hi "
            "FROM invoices GROUP BY series"
        )
        for row in await cursor.fetchall():
            if (row["lo"], row["hi"]) != (1, row["n"]):
                figures.numbering_gaps += 1
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM subscription_periods WHERE status = 'paid'"
        )
        figures.credits_off = await _credits_off(conn)
        since, until = at(START_MS - DAY_MS), at(now + DAY_MS)
        found = await export.issued(conn, since, until)
        booked = await export.ledger_totals(conn, since, until)
        figures.unbalanced = len(await journal.unbalanced_entries(conn))
    figures.invoices = sum(i["series"].startswith("S") for i in found)
    figures.credit_notes = sum(i["kind"] == "credit_note" for i in found)
    tab_invoices = sum(i["series"].startswith("P") for i in found)
    if tab_invoices != figures.tabs:
        figures.credits_off += abs(tab_invoices - figures.tabs)
    if figures.invoices != figures.periods_paid or figures.captures != figures.periods_paid:
        figures.charged_twice += abs(figures.captures - figures.periods_paid)
    if export.totals(found) != booked:
        figures.export_off += 1
    datev = export.datev_totals(export.datev_csv(found, since, until))
    if datev != {cur: t.total_minor for cur, t in booked.items()}:
        figures.export_off += 1
    if sum(c.amount_minor for c in captures) - refunds_minor != sum(
        t.total_minor for t in booked.values()
    ):
        figures.export_off += 1
    figures.totals = {
        cur: (t.net_minor, t.tax_minor, t.total_minor) for cur, t in sorted(booked.items())
    }


async def _credits_off(conn: Any) -> int:
    """Credit notes that credit more than their invoice, or (refunded in full) not exactly its
    total and tax; refunds without their one credit note."""
    cursor = await conn.execute(
        """
        SELECT i.invoice_id, i.total_minor, i.tax_minor,
               coalesce(sum(c.total_minor), 0) AS credited,
               coalesce(sum(c.tax_minor), 0) AS credited_tax
        FROM invoices i LEFT JOIN invoices c ON c.credits_invoice_id = i.invoice_id
        WHERE i.kind = 'invoice' AND i.settlement_id IS NOT NULL
        GROUP BY i.invoice_id, i.total_minor, i.tax_minor
        """
    )
    off = 0
    for row in await cursor.fetchall():
        total, credited = row["total_minor"], -row["credited"]
        if not 0 <= credited <= total or not 0 <= -row["credited_tax"] <= row["tax_minor"]:
            off += 1
        if credited == total and -row["credited_tax"] != row["tax_minor"]:
            off += 1
    cursor = await conn.execute(
        """
        SELECT count(*) AS n FROM refunds r
        WHERE r.status = 'succeeded'
          AND (SELECT count(*) FROM invoices c WHERE c.refund_id = r.refund_id) <> 1
        """
    )
    row = await cursor.fetchone()
    return off + (int(row["n"]) if row else 0)


def main() -> None:
    """Run the simulation on a fresh database of the tests' PostgreSQL and print the figures."""
    run_simulation(__doc__.split("\n")[0], simulate, "subscriptions", 10_000)


if __name__ == "__main__":
    main()
