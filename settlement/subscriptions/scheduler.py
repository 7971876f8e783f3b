"""The renewal scheduler: charges each due period exactly once, with any number of workers.

Theory of operation. Every live subscription carries ``next_action_at``: when it must be looked
at next (its period ends, a dunning retry or step is due, a lost answer must be asked again).
:meth:`Renewals.run_due` works in rounds of three steps:

1. **claim** — one transaction locks due rows with ``FOR UPDATE SKIP LOCKED`` (workers racing
   for the same rows each get different ones, none waits), decides what each one needs by the
   lifecycle table (:meth:`Renewals._advance`: begin the next period, end or expire it, restrict
   or cancel it by the dunning plan, or charge), reserves the charge as a ``pending`` attempt
   numbered per period (its key ``sub:<subscription>:<period>[:<attempt>]``), and sets a claim
   (``lease_until``) on the row; then commits. The database allows one attempt in flight and
   one approved attempt per period (partial unique indexes): a period cannot be charged twice
   even by a bug here.
2. **charge** — outside any transaction (no lock is held across the network), the processor
   named on the subscription is asked (:func:`~settlement.subscriptions.charge.charge_on_file`).
3. **record** — one transaction locks the row again, and if the attempt is still unanswered
   records the outcome: approved → the period is paid, its journal entry (code 30) and its
   invoice (gap-free number) are written, the subscription renews; declined → ``past_due``
   and the dunning plan; no answer → the attempt is ``unknown`` and asked again later with the
   same key.

A worker killed anywhere leaves at most an attempt ``pending`` under a claim: once the claim
lapses another worker claims the row, finds the attempt in flight and runs it again with the
same key — the processor replays its first answer — and records it once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import psycopg

from metering.money import share_minor
from settlement.collection import policy
from settlement.gateway import GatewayError
from settlement.ledger import journal
from settlement.ledger.db import Connection, Database
from settlement.ledger.errors import LedgerError
from settlement.ledger.journal import Account, AccountKind, Entry, EntryCode, Posting
from settlement.ledger.times import at, ms
from settlement.notify.base import Notifier
from settlement.processors.registry import ProcessorRegistry
from settlement.retry_rules import VISA_REATTEMPT_WINDOW_MS
from settlement.subscriptions import invoices, store
from settlement.subscriptions.billing import bill_period
from settlement.subscriptions.charge import ChargeOutcome, charge_on_file
from settlement.subscriptions.config import SubscriptionsConfig
from settlement.subscriptions.lifecycle import DUNNING, RENEWING, TERMINAL, SubEvent, SubState
from settlement.subscriptions.notices import MemberNotices, Notice
from settlement.subscriptions.periods import DAY_MS, period_bounds
from settlement.subscriptions.plans import CARD_EXPIRY_NOTICE_DAYS_DEFAULT, Plan
from settlement.subscriptions.store import Attempt, Period, Subscription
from settlement.subscriptions.tax import rate_bp

log = logging.getLogger("tipmeter.subscriptions")

#: The key of a period's attempt made through a collection pay link starts so.
LINK_KEY_PREFIX: Final = "collect:"
#: Decisions per subscription per claim at most (begin a period, then charge it; restrict,
#: then retry): a bound, not a loop without end.
STEPS_PER_CLAIM_MAX: Final = 6


@dataclass
class RunReport:
    """What one :meth:`Renewals.run_due` did."""

    claimed: int = 0
    approved: int = 0
    declined: int = 0
    unknown: int = 0
    ended: int = 0
    notices: list[Notice] = field(default_factory=list)


def attempt_key(subscription_id: str, period_no: int, attempt_no: int) -> str:
    """The processor idempotency key of an attempt: ``sub:<subscription>:<period>`` for the
    first, ``…:<attempt>`` for each retry."""
    base = f"sub:{subscription_id}:{period_no}"
    return base if attempt_no == 1 else f"{base}:{attempt_no}"


def is_link_attempt(attempt: Attempt) -> bool:
    """Whether a period's attempt was made through a collection pay link (its key
    ``collect:<case>:<n>``, :mod:`settlement.subscriptions.paylink`)."""
    return attempt.idempotency_key.startswith(LINK_KEY_PREFIX)


def bounds_of(sub: Subscription, plan: Plan, period_no: int) -> tuple[int, int]:
    """Start and end of ``sub``'s period ``period_no`` ≥ 1: counted from the anchor (the start
    of period 1), or, from the period a resume began on, from the day of that resume — a pause
    moves every later charge date by the days it lasted, the calendar rule of
    :func:`~settlement.subscriptions.periods.period_bounds` then applying from the new day."""
    if sub.schedule_from_ms and period_no >= sub.schedule_from_period:
        return period_bounds(
            sub.schedule_from_ms,
            plan.period_unit,
            plan.period_length,
            period_no - sub.schedule_from_period + 1,
        )
    return period_bounds(sub.anchor_ms, plan.period_unit, plan.period_length, period_no)


def charge_entry_id(subscription_id: str, period_no: int) -> str:
    """The journal entry of a period's charge (written once)."""
    return f"subscription_charge:{subscription_id}:{period_no}"


async def begin_period(
    conn: Connection,
    sub: Subscription,
    plan: Plan,
    period_no: int,
    starts_ms: int,
    ends_ms: int,
    now_ms: int,
    config: SubscriptionsConfig,
) -> tuple[Subscription, Period]:
    """Begin period ``period_no``: bill it (with the pending adjustments) and write it; the
    subscription points at it. The period is ``due`` when it costs something, ``free`` else."""
    bill = bill_period(
        plan,
        sub.currency,
        period_no,
        starts_ms,
        ends_ms,
        adjustment_minor=sub.adjustment_minor,
        tax_rate_bp=rate_bp(sub.country, config.tax_rates_bp),
        quantity=sub.quantity,
        addons=sub.addons,
    )
    period = Period(
        subscription_id=sub.subscription_id,
        period_no=period_no,
        plan_id=plan.plan_id,
        starts_at_ms=starts_ms,
        ends_at_ms=ends_ms,
        currency=sub.currency,
        net_minor=bill.net_minor,
        tax_minor=bill.tax_minor,
        total_minor=bill.total_minor,
        tax_rate_bp=rate_bp(sub.country, config.tax_rates_bp),
        adjustment_minor=bill.adjustment_used_minor,
        lines=bill.lines,
        status="due" if bill.total_minor > 0 else "free",
        attempts_n=0,
        first_declined_at_ms=0,
        capture_id="",
    )
    if not await store.insert_period(conn, period, now_ms):
        found = await store.read_period(conn, sub.subscription_id, period_no)
        if found is None:  # pragma: no cover - the insert just conflicted with it
            raise RuntimeError("period vanished")
        period = found
    sub = dataclasses.replace(
        sub,
        period_no=period_no,
        period_start_ms=starts_ms,
        period_end_ms=ends_ms,
        adjustment_minor=bill.adjustment_left_minor,
        updated_at_ms=now_ms,
    )
    return sub, period


@dataclass(frozen=True, slots=True)
class _Claimed:
    sub: Subscription
    attempt: Attempt


class Renewals:
    """Runs due renewals, dunning steps and endings (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        processors: ProcessorRegistry,
        config: SubscriptionsConfig | None = None,
        *,
        on_notice: Callable[[Notice, int], Awaitable[object]] | None = None,
    ) -> None:
        self.database = database
        self.processors = processors
        self.config = config if config is not None else SubscriptionsConfig()
        self.on_notice = on_notice
        self._plans: dict[str, Plan] = {}

    @classmethod
    def for_worker(
        cls, database: Database, processors: ProcessorRegistry, claim_idle_ms: int
    ) -> Renewals:
        """The renewals a settlement worker runs in its periodic loop. The claim lasts twice
        the worker's own claim bound (which exceeds one processor call; a charge makes two)."""
        return cls(database, processors, SubscriptionsConfig(lease_ms=2 * claim_idle_ms))

    def notify_with(self, notifier: Notifier) -> None:
        """Send member notices (receipts, dunning, card expiry) through ``notifier``."""
        self.on_notice = MemberNotices(self.database, notifier).send

    async def run_due_logged(self, now_ms: int) -> RunReport | None:
        """:meth:`run_due`, with a database failure logged instead of raised (the worker's
        loop goes on; the rows stay due and are claimed again on the next round)."""
        try:
            return await self.run_due(now_ms)
        except (LedgerError, psycopg.Error) as exc:
            log.error("renewals failed", extra={"fields": {"why": repr(exc)}})
            return None

    async def _plan(self, conn: Connection, plan_id: str) -> Plan:
        # Plans are never changed once created (a new plan is a new id), so a cache is safe.
        plan = self._plans.get(plan_id)
        if plan is None:
            plan = await store.read_plan(conn, plan_id)
            if plan is None:  # pragma: no cover - a foreign key holds it
                raise RuntimeError(f"plan {plan_id} is missing")
            self._plans[plan_id] = plan
        return plan

    async def run_due(self, now_ms: int, *, subscription_id: str = "") -> RunReport:
        """Claim, charge and record everything due at ``now_ms`` (only ``subscription_id``
        when given), in rounds until nothing is due or :attr:`rounds_max` is reached."""
        report = RunReport()
        gate = asyncio.Semaphore(self.config.concurrency_max)

        async def one(work: _Claimed) -> None:
            async with gate:
                await self._run_attempt(work, now_ms, report)

        for _ in range(self.config.rounds_max):
            claimed, notices, claimed_n = await self._claim(now_ms, subscription_id)
            report.claimed += claimed_n
            report.notices.extend(notices)
            if not claimed_n:
                break
            async with asyncio.TaskGroup() as tasks:
                for work in claimed:
                    tasks.create_task(one(work))
        if self.on_notice is not None:
            for notice in report.notices:
                await self.on_notice(notice, now_ms)
        return report

    # -- claim ------------------------------------------------------------------------------

    async def _claim(
        self, now_ms: int, subscription_id: str
    ) -> tuple[list[_Claimed], list[Notice], int]:
        claimed: list[_Claimed] = []
        notices: list[Notice] = []
        async with self.database.connection() as conn, conn.transaction():
            subs = await store.claim_due(
                conn, now_ms, self.config.claim_batch_max, subscription_id=subscription_id
            )
            for sub in subs:
                sub, attempt = await self._advance(conn, sub, now_ms, notices)
                if attempt is not None:
                    sub = dataclasses.replace(sub, lease_until_ms=now_ms + self.config.lease_ms)
                    claimed.append(_Claimed(sub, attempt))
                await store.save(conn, sub)
        return claimed, notices, len(subs)

    async def _advance(
        self, conn: Connection, sub: Subscription, now_ms: int, notices: list[Notice]
    ) -> tuple[Subscription, Attempt | None]:
        """Decide what ``sub`` (locked) needs now; the attempt to run, if any."""
        for _ in range(STEPS_PER_CLAIM_MAX):
            if sub.state in TERMINAL or sub.state is SubState.PAUSED:
                # Nothing is ever due for these: a paused subscription waits for its resume,
                # which begins its next period (the service), never for this scheduler.
                return dataclasses.replace(sub, next_action_at_ms=0, lease_until_ms=0), None
            plan = await self._plan(conn, sub.plan_id)
            period = await store.read_period(conn, sub.subscription_id, sub.period_no)
            if period is None:  # pragma: no cover - a subscription always has its period
                raise RuntimeError(f"{sub.subscription_id}: period {sub.period_no} missing")
            tried = await store.attempts(conn, sub.subscription_id, sub.period_no)
            in_flight = [a for a in tried if a.status in ("pending", "unknown")]
            if in_flight and is_link_attempt(in_flight[0]):
                # The member is paying through a pay link: the collector runs that attempt
                # (and its sweep runs it again if its answer was lost); look again later.
                return dataclasses.replace(
                    sub, next_action_at_ms=now_ms + self.config.lease_ms
                ), None
            if in_flight:
                # A claim lapsed (a worker died) or an answer was lost: the same attempt again.
                return sub, in_flight[0]
            if period.status == "due":
                if sub.state in RENEWING and not tried:
                    return sub, await self._reserve(conn, sub, period, 1, now_ms)
                if sub.state in DUNNING:
                    step = await self._dun(conn, sub, plan, period, tried, now_ms, notices)
                    if isinstance(step, Attempt):
                        return sub, step
                    if step.state is sub.state:
                        return step, None  # nothing due yet: it says when
                    sub = step  # restricted or cancelled: look again
                    continue
                # pragma: no cover - a declined attempt always makes the state past_due
                return dataclasses.replace(sub, next_action_at_ms=0), None
            # The period is paid, free or void: its end is what comes next.
            if now_ms < sub.period_end_ms:
                notice_at = _card_notice_at(sub, plan)
                if notice_at is not None and now_ms >= notice_at:
                    notices.append(Notice("card_expiring", sub.subscription_id, sub.period_no))
                    sub = dataclasses.replace(sub, card_notice_for=sub.period_no + 1)
                    continue
                wake = sub.period_end_ms if notice_at is None else min(notice_at, sub.period_end_ms)
                return dataclasses.replace(sub, next_action_at_ms=wake), None
            if sub.cancel_at_ms and sub.cancel_at_ms <= sub.period_end_ms:
                sub = await self._end(conn, sub, SubEvent.END, now_ms, "cancellation took effect")
                notices.append(Notice("cancelled", sub.subscription_id, sub.period_no))
                continue
            if plan.term_periods and sub.period_no >= plan.term_periods:
                sub = await self._end(conn, sub, SubEvent.EXPIRE, now_ms, "fixed term ended")
                continue
            if sub.pause_at_ms and sub.pause_at_ms <= sub.period_end_ms:
                sub = await store.transition(conn, sub, SubEvent.PAUSE, now_ms, "pause took effect")
                sub = dataclasses.replace(
                    sub, pause_at_ms=0, paused_at_ms=sub.period_end_ms, next_action_at_ms=0
                )
                continue
            number = sub.period_no + 1
            starts, ends = bounds_of(sub, plan, number)
            sub, begun = await begin_period(
                conn, sub, plan, number, starts, ends, now_ms, self.config
            )
            if begun.status == "free":
                sub = await store.transition(
                    conn, sub, SubEvent.RENEW, now_ms, f"period {number} free"
                )
                sub = dataclasses.replace(sub, paid_periods=sub.paid_periods + 1)
            continue
        return dataclasses.replace(sub, next_action_at_ms=now_ms), None

    async def _end(
        self, conn: Connection, sub: Subscription, event: SubEvent, now_ms: int, detail: str
    ) -> Subscription:
        sub = await store.transition(conn, sub, event, now_ms, detail)
        return dataclasses.replace(
            sub, ended_at_ms=now_ms, next_action_at_ms=0, lease_until_ms=0, past_due_since_ms=0
        )

    async def _dun(
        self,
        conn: Connection,
        sub: Subscription,
        plan: Plan,
        period: Period,
        tried: list[Attempt],
        now_ms: int,
        notices: list[Notice],
    ) -> Subscription | Attempt:
        """The dunning plan's next step for a past-due period: cancel, restrict, retry, or
        wait (the same ``sub`` with its next action time)."""
        since = sub.past_due_since_ms
        cancel_at = since + plan.dunning.cancel_after_ms
        restrict_at = since + plan.dunning.restrict_after_ms
        if now_ms >= cancel_at:
            await store.settle_period(conn, sub.subscription_id, period.period_no, "void", now_ms)
            notices.append(Notice("cancelled", sub.subscription_id, period.period_no))
            sub = dataclasses.replace(sub, cancel_mode="dunning")
            return await self._end(conn, sub, SubEvent.CANCEL, now_ms, "unpaid: dunning ended")
        if sub.state is SubState.PAST_DUE and now_ms >= restrict_at:
            notices.append(Notice("restricted", sub.subscription_id, period.period_no))
            return await store.transition(conn, sub, SubEvent.RESTRICT, now_ms, "unpaid")
        # A card the member tried on a pay link is not the card on file: the retries are
        # planned from the scheduler's own attempts (the first charge is always one).
        retries = [a for a in tried if not is_link_attempt(a)] or tried
        last = retries[-1]
        schedule = _waits_ms(plan.dunning.retry_days)
        card_retries = await store.card_attempts_since(
            conn, last.payment_method, last.started_at_ms - VISA_REATTEMPT_WINDOW_MS
        )
        decision = policy.next_retry(
            reason=last.decline_reason,
            advice_code=last.advice_code,
            retries_done=len(retries) - 1,
            last_attempt_ms=last.started_at_ms,
            card_retries_ms=card_retries,
            schedule_ms=schedule,
            horizon_ms=cancel_at,
        )
        if last.payment_method != sub.payment_method:
            # The member updated the card: try the new one at once.
            decision = policy.RetryDecision(now_ms)
        if decision.at_ms is not None and decision.at_ms <= now_ms:
            return await self._reserve(conn, sub, period, len(tried) + 1, now_ms)
        waits = [cancel_at]
        if sub.state is SubState.PAST_DUE:
            waits.append(restrict_at)
        if decision.at_ms is not None:
            waits.append(decision.at_ms)
        return dataclasses.replace(sub, next_action_at_ms=min(waits))

    async def _reserve(
        self, conn: Connection, sub: Subscription, period: Period, number: int, now_ms: int
    ) -> Attempt:
        return await store.reserve_attempt(
            conn,
            sub.subscription_id,
            period.period_no,
            number,
            attempt_key(sub.subscription_id, period.period_no, number),
            sub.payment_method,
            period.total_minor,
            now_ms,
        )

    # -- charge and record ------------------------------------------------------------------

    async def _run_attempt(self, work: _Claimed, now_ms: int, report: RunReport) -> None:
        sub, attempt = work.sub, work.attempt
        try:
            gateway = self.processors.for_processor(sub.processor)
            outcome: ChargeOutcome | None = await charge_on_file(
                gateway,
                idempotency_key=attempt.idempotency_key,
                payment_method=attempt.payment_method,
                amount_minor=attempt.amount_minor,
                currency=sub.currency,
            )
        except GatewayError as exc:
            log.warning("renewal %s: processor error: %s", attempt.idempotency_key, exc)
            outcome = None
        notices = await self._record(sub.subscription_id, attempt, outcome, now_ms)
        report.notices.extend(notices)
        if outcome is None:
            report.unknown += 1
        elif outcome.approved:
            report.approved += 1
        else:
            report.declined += 1

    async def record(
        self, subscription_id: str, attempt: Attempt, outcome: ChargeOutcome | None, now_ms: int
    ) -> list[Notice]:
        """Record an attempt's outcome as any renewal's (a pay link's charge of a past-due
        period, :mod:`settlement.subscriptions.paylink`); the notices it calls for."""
        return await self._record(subscription_id, attempt, outcome, now_ms)

    async def _record(
        self, subscription_id: str, attempt: Attempt, outcome: ChargeOutcome | None, now_ms: int
    ) -> list[Notice]:
        async with self.database.connection() as conn, conn.transaction():
            sub = await store.read(conn, subscription_id, lock=True)
            if sub is None:  # pragma: no cover - subscriptions are never deleted
                return []
            recorded = {
                a.attempt_no: a
                for a in await store.attempts(conn, subscription_id, attempt.period_no)
            }
            now = recorded.get(attempt.attempt_no)
            if now is None or now.status in ("approved", "declined"):
                return []  # another runner of this attempt recorded it first: once
            if outcome is None:
                await store.finish_attempt(conn, attempt, "unknown", now_ms)
                sub = dataclasses.replace(
                    sub,
                    lease_until_ms=0,
                    next_action_at_ms=now_ms + self.config.unknown_retry_ms,
                    updated_at_ms=now_ms,
                )
                await store.save(conn, sub)
                return []
            if outcome.approved:
                return await self._record_paid(conn, sub, attempt, outcome.capture_id, now_ms)
            return await self._record_declined(conn, sub, attempt, outcome, now_ms)

    async def _record_paid(
        self, conn: Connection, sub: Subscription, attempt: Attempt, capture_id: str, now_ms: int
    ) -> list[Notice]:
        await store.finish_attempt(conn, attempt, "approved", now_ms, capture_id=capture_id)
        await store.settle_period(
            conn, sub.subscription_id, attempt.period_no, "paid", now_ms, capture_id=capture_id
        )
        period = await store.read_period(conn, sub.subscription_id, attempt.period_no)
        if period is None:  # pragma: no cover - the attempt's foreign key holds it
            raise RuntimeError("period vanished")
        plan = await self._plan(conn, period.plan_id)
        await self._post_charge(conn, sub, plan, period, capture_id, now_ms)
        if sub.state in DUNNING or attempt.period_no >= 1:
            sub = await store.transition(
                conn, sub, SubEvent.RENEW, now_ms, f"period {attempt.period_no} paid"
            )
        sub = dataclasses.replace(
            sub,
            paid_periods=sub.paid_periods + (1 if attempt.period_no >= 1 else 0),
            past_due_since_ms=0,
            lease_until_ms=0,
            next_action_at_ms=max(sub.period_end_ms, now_ms),
            updated_at_ms=now_ms,
        )
        notice_at = _card_notice_at(sub, await self._plan(conn, sub.plan_id))
        if notice_at is not None:
            # The card expires before the next renewal: wake up in time to say so.
            sub = dataclasses.replace(
                sub, next_action_at_ms=max(min(notice_at, sub.next_action_at_ms), now_ms)
            )
        await store.save(conn, sub)
        return [Notice("receipt", sub.subscription_id, attempt.period_no)]

    async def _record_declined(
        self,
        conn: Connection,
        sub: Subscription,
        attempt: Attempt,
        outcome: ChargeOutcome,
        now_ms: int,
    ) -> list[Notice]:
        await store.finish_attempt(
            conn,
            attempt,
            "declined",
            now_ms,
            decline_reason=outcome.decline_reason,
            advice_code=outcome.advice_code,
        )
        await store.settle_period(
            conn, sub.subscription_id, attempt.period_no, "due", now_ms, declined=True
        )
        sub = await store.transition(
            conn,
            sub,
            SubEvent.DECLINE,
            now_ms,
            f"attempt {attempt.attempt_no}: {outcome.decline_reason}",
        )
        sub = dataclasses.replace(
            sub,
            past_due_since_ms=sub.past_due_since_ms or now_ms,
            lease_until_ms=0,
            # The next claim works out the dunning plan's next step from the attempts.
            next_action_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        await store.save(conn, sub)
        return [Notice("declined", sub.subscription_id, attempt.period_no)]

    async def _post_charge(
        self,
        conn: Connection,
        sub: Subscription,
        plan: Plan,
        period: Period,
        capture_id: str,
        now_ms: int,
    ) -> None:
        """The charge's journal entry and its invoice, in the recording transaction."""
        currency = sub.currency
        share = share_minor(period.net_minor, plan.model_share_bp) if plan.room else 0
        postings = [
            Posting(journal.processor_clearing(sub.processor, currency), period.total_minor),
            Posting(Account(AccountKind.TAX_PAYABLE, currency), -period.tax_minor),
            Posting(journal.platform_revenue(currency), -(period.net_minor - share)),
        ]
        if share:
            postings.append(Posting(journal.model_payable(plan.room, currency), -share))
        entry_id = charge_entry_id(sub.subscription_id, period.period_no)
        entry = Entry(
            entry_id=entry_id,
            code=EntryCode.SUBSCRIPTION_CHARGE,
            currency=currency,
            postings=tuple(postings),
            posted_at=at(now_ms),
        )
        await journal.post(conn, [entry])
        facts = invoices.InvoiceFacts(
            kind="invoice",
            subscription_id=sub.subscription_id,
            period_no=period.period_no,
            customer=sub.customer,
            country=sub.country,
            country_evidence=sub.country_evidence,
            currency=currency,
            net_minor=period.net_minor,
            tax_minor=period.tax_minor,
            total_minor=period.total_minor,
            tax_inclusive=plan.tax_inclusive,
            entry_id=entry_id,
            capture_id=capture_id,
            lines=period.lines,
        )
        series = invoices.series_of(self.config.invoice_series_prefix, now_ms)
        await invoices.issue(conn, series, facts, now_ms)


def card_valid_until_ms(card_expires: str) -> int:
    """The first instant a card expiring in ``YYYY-MM`` no longer works (0: not known)."""
    if not card_expires:
        return 0
    year, month = int(card_expires[:4]), int(card_expires[5:7])
    return ms(datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC))


def _card_notice_at(sub: Subscription, plan: Plan) -> int | None:
    """When to tell the member that the card expires before the next renewal (None: no
    notice is due for this period — the card reaches it, the member was told, or nothing
    renews)."""
    valid_until = card_valid_until_ms(sub.card_expires)
    if not valid_until or valid_until > sub.period_end_ms:
        return None
    if sub.card_notice_for == sub.period_no + 1:
        return None
    if sub.cancel_at_ms and sub.cancel_at_ms <= sub.period_end_ms:
        return None
    if plan.term_periods and sub.period_no >= plan.term_periods:
        return None
    return sub.period_end_ms - CARD_EXPIRY_NOTICE_DAYS_DEFAULT * DAY_MS


def _waits_ms(retry_days: tuple[int, ...]) -> tuple[int, ...]:
    """Dunning retry days (counted from the first decline) as waits after each attempt."""
    waits = []
    previous = 0
    for day in retry_days:
        waits.append((day - previous) * DAY_MS)
        previous = day
    return tuple(waits)
