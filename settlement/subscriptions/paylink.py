"""A past-due period paid through a collection pay link (docs/subscriptions.md, "Dunning").

Theory of operation. A membership debt is a collection case of origin ``membership``
(:mod:`settlement.collection`): the unpaid period of a ``past_due`` or ``restricted``
subscription, one case per period. When the member pays through the case's link, the
collector reserves its own attempt *n* of the case (one in flight per case) and asks
:func:`pay_period` to charge the period with the card she entered. That charge is **an attempt
of the period** like any renewal or dunning retry, recorded in ``subscription_attempts`` with
the key ``collect:<case>:<n>``, so the period's own rules hold it: at most one attempt in flight
and one approved per period (partial unique indexes) — a link paid while a dunning retry runs
is told ``busy``, and a period is never charged twice whatever races. The outcome is recorded
by the renewal scheduler's own recording step (:meth:`Renewals.record`): approved → the period
is paid, its ``subscription_charge`` entry and its invoice are written, the subscription
``renew``s to ``active``, a receipt is sent, as for any renewal.

Every step repeats safely: asked again for the same key (the collector's sweep resumes an
attempt whose answer was lost), :func:`pay_period` finds the attempt; recorded, it answers the
recorded outcome; still open, it charges again with the same keys (the processor replays its
first answer). The scheduler leaves a link's attempt in flight alone (the collector runs it)
and counts only its own retries when it plans the next one.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from enum import StrEnum

import psycopg

from settlement.gateway import GatewayError
from settlement.ledger.db import Connection
from settlement.subscriptions import store
from settlement.subscriptions.charge import ChargeOutcome, charge_on_file
from settlement.subscriptions.lifecycle import DUNNING
from settlement.subscriptions.scheduler import LINK_KEY_PREFIX, Renewals
from settlement.subscriptions.store import Attempt, Period, Subscription

log = logging.getLogger("tipmeter.subscriptions")


class LinkCode(StrEnum):
    """How a link's charge of a period ended."""

    APPROVED = "approved"
    DECLINED = "declined"
    BUSY = "busy"  # another attempt of the period is in flight (a dunning retry)
    NOT_OWED = "not_owed"  # the period is no longer owed: paid otherwise, or voided
    UNKNOWN = "unknown"  # the processor did not answer: ask again with the same key


@dataclass(frozen=True, slots=True)
class LinkCharge:
    """A link charge's outcome (``capture_id`` also for ``not_owed`` when the period was paid
    otherwise: the capture that paid it)."""

    code: LinkCode
    capture_id: str = ""
    decline_reason: str = ""
    advice_code: str = ""


async def owed_period(conn: Connection, subscription_id: str) -> tuple[Subscription, Period] | None:
    """The subscription and the period it owes, when it is past due (None: nothing owed)."""
    sub = await store.read(conn, subscription_id)
    if sub is None or sub.state not in DUNNING:
        return None
    period = await store.read_period(conn, subscription_id, sub.period_no)
    if period is None or period.status != "due":
        return None
    return sub, period


def _answer(attempt: Attempt) -> LinkCharge | None:
    if attempt.status == "approved":
        return LinkCharge(LinkCode.APPROVED, capture_id=attempt.capture_id)
    if attempt.status == "declined":
        return LinkCharge(
            LinkCode.DECLINED,
            decline_reason=attempt.decline_reason,
            advice_code=attempt.advice_code,
        )
    return None


async def _reserve(
    conn: Connection,
    subscription_id: str,
    period_no: int,
    key: str,
    payment_method: str,
    now_ms: int,
) -> tuple[Subscription, Attempt] | LinkCharge:
    """The period's attempt of ``key`` (reserved now if new), with the subscription locked; or
    the answer when there is nothing to charge."""
    sub = await store.read(conn, subscription_id, lock=True)
    if sub is None:
        return LinkCharge(LinkCode.NOT_OWED)
    tried = await store.attempts(conn, subscription_id, period_no)
    mine = next((a for a in tried if a.idempotency_key == key), None)
    if mine is not None:
        return _answer(mine) or (sub, mine)
    period = await store.read_period(conn, subscription_id, period_no)
    if period is None or period.status != "due" or sub.state not in DUNNING:
        paid = period.capture_id if period is not None and period.status == "paid" else ""
        return LinkCharge(LinkCode.NOT_OWED, capture_id=paid)
    if any(a.status in ("pending", "unknown") for a in tried):
        return LinkCharge(LinkCode.BUSY)
    mine = await store.reserve_attempt(
        conn,
        subscription_id,
        period_no,
        max((a.attempt_no for a in tried), default=0) + 1,
        key,
        payment_method,
        period.total_minor,
        now_ms,
    )
    return sub, mine


async def pay_period(
    renewals: Renewals,
    subscription_id: str,
    period_no: int,
    *,
    key: str,
    payment_method: str,
    now_ms: int,
) -> LinkCharge:
    """Charge period ``period_no`` once with the card a member entered on a pay link, under
    ``key`` (the collection attempt's ``collect:<case>:<n>``), and record it as any renewal."""
    if not key.startswith(LINK_KEY_PREFIX):
        raise ValueError(f"a link's charge key starts with {LINK_KEY_PREFIX!r}")
    try:
        async with renewals.database.connection() as conn, conn.transaction():
            found = await _reserve(conn, subscription_id, period_no, key, payment_method, now_ms)
    except psycopg.errors.UniqueViolation:
        return LinkCharge(LinkCode.BUSY)  # a dunning retry reserved first
    if isinstance(found, LinkCharge):
        return found
    sub, attempt = found
    outcome: ChargeOutcome | None
    try:
        outcome = await charge_on_file(
            renewals.processors.for_processor(sub.processor),
            idempotency_key=key,
            payment_method=attempt.payment_method,
            amount_minor=attempt.amount_minor,
            currency=sub.currency,
        )
    except GatewayError as exc:
        log.warning("link charge %s: processor error: %s", key, exc)
        outcome = None
    notices = await renewals.record(subscription_id, attempt, outcome, now_ms)
    if renewals.on_notice is not None:
        for notice in notices:
            if notice.kind == "receipt":  # a declined card is told on the link's page
                await renewals.on_notice(notice, now_ms)
    async with renewals.database.connection() as conn:
        recorded = {a.attempt_no: a for a in await store.attempts(conn, subscription_id, period_no)}
    final = recorded.get(attempt.attempt_no, dataclasses.replace(attempt, status="unknown"))
    return _answer(final) or LinkCharge(LinkCode.UNKNOWN)
