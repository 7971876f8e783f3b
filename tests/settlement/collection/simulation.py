"""A seeded simulation of collection with a fake clock: failed captures over 60 days.

Run by ``test_simulation.py`` (a CI size, and the full 2,000 marked slow), or alone::

    python -m tests.settlement.collection.simulation --captures 2000 --seed 7

Everything random comes from one seed, printed first: a failure replays from it. The failed
captures are written into a fresh ledger as the settlement worker writes them (a declined
settlement, its line, its earnings, its ``tab_receivable`` entry), spread over the first 20
days; the collector's sweep runs every simulated hour; customers who get a link pay at random
times — some with a declined card, some exactly when a retry is due (so a link payment and a
retry race for the same debt). The processor is a simulated card network: each card on file
declines with its own reason (Mastercard cards add advice codes) until, for the cards that
ever recover, a random day. It records every authorization it saw, so the invariants are
checked from the network's side, not from the collector's own bookkeeping:

- 0 retries of a decline that will never approve;
- at most 15 attempts per card in any 30 days;
- every Mastercard wait (advice codes 24–30) honoured;
- 0 debts collected twice (one capture per case at the network, and every paid case's tab
  account at zero in the ledger);
- every case terminal (paid or written off) at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

from metering.clock import FakeClock
from settlement import retry_rules
from settlement.collection.collector import CollectionConfig, Collector, SweepReport, case_id_of
from settlement.collection.links import LinkLimits
from settlement.gateway import (
    Authorization,
    Capabilities,
    CaptureResult,
    DeclineReason,
    Hold,
    Outcome,
    RefundResult,
    VoidResult,
)
from settlement.ledger import journal
from settlement.ledger.db import Connection
from settlement.ledger.journal import Entry, EntryCode, Posting
from settlement.ledger.ledger import Ledger
from settlement.ledger.times import at
from settlement.processors.registry import ProcessorRegistry
from tests.settlement.simulation_cli import run_simulation

HOUR_MS: Final = 3_600_000
DAY_MS: Final = 24 * HOUR_MS
DAYS: Final = 60
FAILURE_DAYS: Final = 20
#: 1 January 2027, 00:00 UTC: the simulation's day 0.
START_MS: Final = 1_798_761_600_000

_LATER = [r for r in DeclineReason if retry_rules.rule_for(r).retryable]
_NEVER = [r for r in DeclineReason if retry_rules.rule_for(r).category == "never"]
_UPDATE = [r for r in DeclineReason if retry_rules.rule_for(r).category == "update_card"]
_ADVICE = ["", "", "", "02", "24", "25", "26", "27", "28", "29", "30", "03"]


@dataclass
class Card:
    """A card on file as the simulated network sees it."""

    token: str
    reason: DeclineReason
    mastercard: bool
    recovers_at_ms: int | None


@dataclass
class Figures:
    """What the simulation counted."""

    seed: int
    captures: int
    cases: int = 0
    retries: int = 0
    link_payments: int = 0
    races: int = 0
    paid: int = 0
    written_off: int = 0
    never_retried: int = 0
    window_max: int = 0
    mastercard_waits: int = 0
    mastercard_too_soon: int = 0
    collected_twice: int = 0
    not_terminal: int = 0
    #: The states of the cases left open at the end (empty when every case is terminal).
    open_states: str = ""
    tab_accounts_left: int = 0

    def lines(self) -> list[str]:
        """The figures, one per line."""
        return [f"{name}={value}" for name, value in vars(self).items()]


@dataclass
class Network:
    """A simulated processor: one decision per card and time, idempotent by key."""

    clock: FakeClock
    cards: dict[str, Card]
    results: dict[str, Hold | CaptureResult] = field(default_factory=dict)
    #: Every authorization of a card on file: (time, decline category after it, advice code).
    seen: dict[str, list[tuple[int, str, str]]] = field(default_factory=lambda: defaultdict(list))
    captures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    rng: random.Random = field(default_factory=random.Random)

    @property
    def capabilities(self) -> Capabilities:
        """Everything a card network here does."""
        return Capabilities()

    async def authorize(
        self, *, idempotency_key: str, payment_method: str, amount_minor: int, currency: str
    ) -> Hold:
        """Approve or decline by the card's profile and the time."""
        found = self.results.get(idempotency_key)
        if isinstance(found, Hold):
            return found
        await asyncio.sleep(0)  # let a racing caller in
        now = self.clock.now_ms()
        card = self.cards.get(payment_method)
        if card is None:  # a card the customer entered on the pay page
            approved = payment_method.startswith("link_ok")
            hold = (
                Hold(Outcome.APPROVED, f"auth_{idempotency_key}", amount_minor, currency)
                if approved
                else Hold(Outcome.DECLINED, decline_reason=DeclineReason.INSUFFICIENT_FUNDS)
            )
        elif card.recovers_at_ms is not None and now >= card.recovers_at_ms:
            hold = Hold(Outcome.APPROVED, f"auth_{idempotency_key}", amount_minor, currency)
            self.seen[card.token].append((now, "approved", ""))
        else:
            advice = self.rng.choice(_ADVICE) if card.mastercard else ""
            hold = Hold(Outcome.DECLINED, decline_reason=card.reason, advice_code=advice)
            category = retry_rules.rule_for(card.reason, mastercard_advice=advice).category
            self.seen[card.token].append((now, str(category), advice))
        self.results[idempotency_key] = hold
        return hold

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Capture an approved hold, once per key."""
        found = self.results.get(idempotency_key)
        if isinstance(found, CaptureResult):
            return found
        case = idempotency_key.split(":")[1]
        capture_id = f"cap_{idempotency_key}"
        self.captures[case].append(capture_id)
        result = CaptureResult(Outcome.APPROVED, capture_id, amount_minor)
        self.results[idempotency_key] = result
        return result

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Not used by collection."""
        raise NotImplementedError

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """Not used by collection."""
        raise NotImplementedError

    async def refund(
        self, *, idempotency_key: str, capture_id: str, amount_minor: int
    ) -> RefundResult:
        """Not used by collection."""
        raise NotImplementedError

    async def lookup(
        self, idempotency_key: str
    ) -> Hold | CaptureResult | VoidResult | RefundResult | None:
        """The recorded answer to a key."""
        return self.results.get(idempotency_key)

    async def lookup_authorization(self, auth_ref: str) -> Authorization | None:
        """Not used by collection."""
        return None


async def _seed_failure(
    conn: Connection, sid: str, customer: str, card: Card, amount: int, failed_ms: int
) -> None:
    # What the settlement worker writes for a declined capture (docs/ledger.md).
    share = amount * 6 // 10
    async with conn.transaction():
        await conn.execute(
            """
            INSERT INTO settlements (settlement_id, customer, tab_id, currency, processor,
                auth_ref, payment_method, outcome, state, cap_minor, accrued_minor,
                captured_minor, platform_minor, decline_reason, retryable, outcome_at)
            VALUES (%s, %s, %s, 'USD', 'sandbox', %s, %s, 'declined', 'failed', %s, %s, 0, %s,
                    %s, %s, %s)
            """,
            (
                sid,
                customer,
                sid.split("/")[1],
                f"auth_{sid}",
                card.token,
                amount,
                amount,
                amount - share,
                str(card.reason),
                card.reason.retryable,
                at(failed_ms),
            ),
        )
        await conn.execute(
            """
            INSERT INTO settlement_lines (settlement_id, line_id, seq, kind, room, at,
                amount_minor, payout_bp, share_minor)
            VALUES (%s, 'l1', 0, 'tip', 'room1', %s, %s, 6000, %s)
            """,
            (sid, at(failed_ms), amount, share),
        )
        await conn.execute(
            """
            INSERT INTO model_earnings (settlement_id, room, currency, gross_minor, share_minor,
                collected, outcome_at)
            VALUES (%s, 'room1', 'USD', %s, %s, false, %s)
            """,
            (sid, amount, share, at(failed_ms)),
        )
        postings = (
            Posting(journal.customer_tab(sid, "USD"), amount),
            Posting(journal.earnings_pending("USD"), -amount),
        )
        await journal.post(
            conn,
            [
                Entry(
                    f"tab_receivable:{sid}",
                    EntryCode.TAB_RECEIVABLE,
                    "USD",
                    postings,
                    at(failed_ms),
                    sid,
                )
            ],
        )


def _reason(rng: random.Random) -> DeclineReason:
    pool = rng.choices([_LATER, _NEVER, _UPDATE], weights=[6, 3, 1])[0]
    return rng.choice(pool)


async def simulate(ledger: Ledger, captures: int, seed: int) -> Figures:
    """Run the simulation on ``ledger`` (a fresh database); return its figures."""
    rng = random.Random(seed)
    clock = FakeClock(START_MS)
    cards: dict[str, Card] = {}
    card_count = max(captures * 4 // 5, 1)  # some cards fail more than once
    for number in range(card_count):
        reason = _reason(rng)
        recovers = (
            START_MS + rng.randrange(DAY_MS // 2, 40 * DAY_MS) if rng.random() < 0.6 else None
        )
        token = f"card_{number}"
        cards[token] = Card(token, reason, rng.random() < 0.4, recovers)
    network = Network(clock, cards, rng=random.Random(seed + 1))
    config = CollectionConfig(
        link_secret=f"sim-{seed}",
        write_off_grace_ms=7 * DAY_MS,
        link=LinkLimits(expiry_s=72 * 3_600, opens_max=None, failed_max=2),
        batch_max=5_000,
    )
    collector = Collector(ledger, ProcessorRegistry.single(network), config)
    failures: list[tuple[int, str]] = []
    async with ledger.database.connection() as conn:
        for number in range(captures):
            failed_ms = START_MS + rng.randrange(0, FAILURE_DAYS * DAY_MS)
            card = cards[f"card_{rng.randrange(card_count)}"]
            sid = f"cust{number}/tab{number}"
            amount = rng.randrange(100, 20_000)
            await _seed_failure(conn, sid, f"cust{number}", card, amount, failed_ms)
            failures.append((failed_ms, sid))
    # Customers: half get a link when their case opens; of those, most pay at a random time
    # (some first with a card that is declined), some exactly when a retry is due.
    plans: dict[str, tuple[int, bool, bool]] = {}
    for _, sid in failures:
        if rng.random() < 0.5:
            plans[sid] = (
                rng.randrange(HOUR_MS, 5 * DAY_MS),
                rng.random() < 0.3,
                rng.random() < 0.2,
            )
    figures = Figures(seed, captures)
    tokens: dict[str, str] = {}
    pay_at: dict[str, int] = {}
    opened: set[str] = set()
    end_ms = START_MS + DAYS * DAY_MS
    while clock.now_ms() < end_ms:
        now = clock.now_ms()
        due_payers = [sid for sid, when in pay_at.items() if when <= now]
        racing = [sid for sid in due_payers if plans[sid][2]]
        calm = [sid for sid in due_payers if not plans[sid][2]]
        for sid in calm:
            await _customer_pays(collector, tokens[sid], sid, plans, figures, now)
            del pay_at[sid]
        # Racing customers pay while the sweep's retries run.
        results = await asyncio.gather(
            collector.sweep(now),
            *(_customer_pays(collector, tokens[sid], sid, plans, figures, now) for sid in racing),
        )
        for sid in racing:
            del pay_at[sid]
        figures.races += len(racing)
        report = results[0]
        if isinstance(report, SweepReport):
            figures.retries += report.retried
        # Links for the cases this sweep opened.
        for failed_ms, sid in failures:
            if failed_ms <= now and sid not in opened:
                opened.add(sid)
                plan = plans.get(sid)
                found = await collector.case(case_id_of(sid))
                if plan is not None and found is not None and found["state"] == "open":
                    tokens[sid] = await collector.create_link(case_id_of(sid), now)
                    pay_at[sid] = now + plan[0]
                    if plan[2]:
                        case = await collector.case(case_id_of(sid))
                        if case is not None and case["next_retry_at_ms"]:
                            pay_at[sid] = case["next_retry_at_ms"] + HOUR_MS - 1
                            pay_at[sid] -= pay_at[sid] % HOUR_MS
        clock.advance(HOUR_MS)
    await collector.sweep(clock.now_ms())
    await _check(ledger, network, failures, figures)
    return figures


async def _customer_pays(
    collector: Collector,
    token: str,
    sid: str,
    plans: dict[str, tuple[int, bool, bool]],
    figures: Figures,
    now_ms: int,
) -> None:
    _, declined_first, _ = plans[sid]
    if declined_first:
        await collector.pay_link(token, f"link_bad_{sid}", now_ms)
    result = await collector.pay_link(token, f"link_ok_{sid}", now_ms)
    if result.attempt_no:
        figures.link_payments += 1


async def _check(
    ledger: Ledger, network: Network, failures: list[tuple[int, str]], figures: Figures
) -> None:
    async with ledger.database.connection() as conn:
        cursor = await conn.execute("SELECT case_id, state, settlement_id FROM collection_cases")
        rows = await cursor.fetchall()
    figures.cases = len(rows)
    figures.not_terminal = len(failures) - sum(
        1 for row in rows if row["state"] in ("paid", "written_off")
    )
    figures.open_states = ",".join(
        sorted(row["state"] for row in rows if row["state"] not in ("paid", "written_off"))
    )
    figures.paid = sum(1 for row in rows if row["state"] == "paid")
    figures.written_off = sum(1 for row in rows if row["state"] == "written_off")
    for row in rows:
        if len(network.captures.get(row["case_id"], [])) > 1:
            figures.collected_twice += 1
        if row["state"] == "paid" and len(network.captures.get(row["case_id"], [])) != 1:
            figures.collected_twice += 1
        balance = await ledger.account_balance(journal.customer_tab(row["settlement_id"], "USD"))
        if balance != 0:
            figures.tab_accounts_left += 1
    window = retry_rules.VISA_REATTEMPT_WINDOW_MS
    for token, seen in network.seen.items():
        card = network.cards[token]
        times = sorted(t for t, _, _ in seen)
        for index, first in enumerate(times):
            in_window = sum(1 for t in times[index:] if t < first + window)
            figures.window_max = max(figures.window_max, in_window)
        for (t0, category, advice), (t1, _, _) in itertools.pairwise(seen):
            if category == "never":
                figures.never_retried += 1
            wait = retry_rules.advice_wait_ms(advice)
            if wait:
                figures.mastercard_waits += 1
                if t1 - t0 < wait:
                    figures.mastercard_too_soon += 1
        if not retry_rules.rule_for(card.reason).retryable and seen:
            figures.never_retried += len(seen)


def main() -> None:
    """Run the simulation on a fresh database of the tests' PostgreSQL and print the figures."""
    run_simulation(__doc__.split("\n")[0], simulate, "captures", 2_000)


if __name__ == "__main__":
    main()
