"""The collector: opens cases, retries cards by the rules, takes link payments, closes cases.

Theory of operation. A sweeper over the ledger (:meth:`Collector.sweep`, run by the worker's
loop or in burst mode by tests) finds declined and expired settlements with money owed and no
case (:meth:`open_cases`), runs the retries that are due, runs again any attempt whose outcome
the processor did not give, and ends the cases that have nothing left to try.

A charge — an automatic retry of the card on file, or the customer paying through a link — is
three steps. (1) One transaction locks the case, checks that it is chargeable, and reserves
attempt *n* (``pending``); a partial unique index allows one attempt in flight per case, so a
second caller is told ``busy``. For a retry it also takes the card's advisory lock and counts
the card's retries in the last 30 days, so the reattempt limit holds across cases. (2) The
processor named on the case (through the registry) is asked to authorize and capture, with
idempotency keys ``collect:<case>:<n>:auth`` and ``…:capture``: running attempt *n* again after
a crash or a timeout replays the processor's first answer, never a second charge. (3) One
transaction records the outcome: approved → the case ``pay`` transition, the journal entries
and the tab ``collect``; declined → ``attempt_failed``, the next retry time from the rules.
The merchant's webhook is written in that same transaction, into the outbox
(:mod:`settlement.collection.outbox`), and relayed to the webhook queue after the commit: a
crash between the two loses nothing, the relay of any worker queues it later.

So a link paid while a retry approves the same debt ends in exactly one charge: whichever
reserves first charges; the other is refused (``busy`` while it runs, ``closed`` after).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import psycopg

from metering.errors import StoreError
from settlement import retry_rules
from settlement.collection import cases, links, outbox, policy
from settlement.collection.batch import Row
from settlement.collection.cases import MEMBERSHIP, Case
from settlement.collection.lifecycle import CHARGEABLE, CaseEvent, CaseState
from settlement.collection.links import LinkLimits, LinkRefusal, LinkRow
from settlement.config import Checkpoint
from settlement.gateway import GatewayError
from settlement.ledger.errors import LedgerUnavailable
from settlement.ledger.ledger import Ledger
from settlement.ledger.times import at
from settlement.processors.hosted import HostedCheckout, HostedPage, HostedStart, HostedStatus
from settlement.processors.registry import ProcessorRegistry
from settlement.subscriptions.paylink import LinkCode, pay_period
from settlement.subscriptions.scheduler import Renewals

log = logging.getLogger("tipmeter.collection")

#: Cases one sweep step handles at most (each kind of work).
SWEEP_BATCH_MAX_DEFAULT: Final = 500
#: How long a reserved attempt may stay ``pending`` before the sweep runs it again (its
#: caller died between reserving and recording; the processor replays by key, so this is safe).
ATTEMPT_LEASE_MS_DEFAULT: Final = 5 * 60_000
#: A link attempt paying on a processor's hosted page is ``payment_method`` this prefix and the
#: page's reference (the processor's session or transaction id, when it gives one).
HOSTED_PREFIX: Final = "hosted:"
#: How long a hosted payment page may stay unpaid before its attempt is given up (a declined
#: attempt, ``hosted_page_expired``), so the case is not held ``busy`` for ever.
HOSTED_ABANDON_MS_DEFAULT: Final = 24 * 3_600_000
#: The decline reason of a hosted page given up (shown as "other").
HOSTED_PAGE_EXPIRED: Final = "hosted_page_expired"
#: The decline reason of a membership debt whose membership ended unpaid before it was paid.
NOTHING_OWED: Final = "nothing_owed"
#: The end of a membership debt's link attempt made while a dunning retry of its period ran
#: (nothing was charged; the member tries again in a moment).
PAYMENT_IN_PROGRESS: Final = "payment_in_progress"
#: How long an exhausted or expired case waits for a new link before it is written off.
WRITE_OFF_GRACE_MS_DEFAULT: Final = 14 * 24 * 3_600_000

PAID: Final = "collection.paid"
ATTEMPT_FAILED: Final = "collection.attempt_failed"
EXHAUSTED: Final = "collection.exhausted"
EXPIRED: Final = "collection.expired"
WRITTEN_OFF: Final = "collection.written_off"

#: The decline reasons a customer is shown, in words (the page's and the webhook's).
REASON_WORDS: Final[Mapping[str, str]] = {
    "expired_card": "card_expired",
    "stolen_card": "card_reported_stolen",
    "lost_card": "card_reported_stolen",
    "invalid_card": "card_not_valid",
    "card_not_active": "card_not_active",
    "insufficient_funds": "insufficient_funds",
}


def reason_in_words(reason: str) -> str:
    """The customer-facing reason: one of the six the pages show."""
    return REASON_WORDS.get(reason, "other")


class ChargeCode(StrEnum):
    """How a charge attempt ended (a business outcome, returned, not raised)."""

    PAID = "paid"
    DECLINED = "declined"
    BUSY = "busy"  # another attempt of this case is in flight
    CLOSED = "closed"  # the case is not chargeable (paid, written off, exhausted, expired)
    NOT_ALLOWED = "not_allowed"  # the card rules forbid retrying now
    UNAVAILABLE = "unavailable"  # the processor did not answer: the attempt is run again later


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """The outcome of one charge attempt."""

    code: ChargeCode
    attempt_no: int = 0
    capture_id: str = ""
    decline_reason: str = ""

    @property
    def reason_words(self) -> str:
        """The decline reason as the customer is told it."""
        return reason_in_words(self.decline_reason)


@dataclass(frozen=True, slots=True)
class CollectionConfig:
    """The merchant's collection settings (every bound named)."""

    retry_schedule_ms: tuple[int, ...] = policy.RETRY_SCHEDULE_MS_DEFAULT
    retry_horizon_ms: int = policy.RETRY_HORIZON_MS_DEFAULT
    link: LinkLimits = field(default_factory=LinkLimits)
    link_secret: str = ""
    write_off_grace_ms: int = WRITE_OFF_GRACE_MS_DEFAULT
    attempt_lease_ms: int = ATTEMPT_LEASE_MS_DEFAULT
    batch_max: int = SWEEP_BATCH_MAX_DEFAULT


@dataclass(slots=True)
class SweepReport:
    """What one sweep did."""

    opened: int = 0
    retried: int = 0
    paid: int = 0
    exhausted: int = 0
    expired: int = 0
    written_off: int = 0

    def counts(self) -> dict[str, int]:
        """The counts by name, as the sweep's log line and ``POST /v1/collection/sweep`` give
        them."""
        return dataclasses.asdict(self)


def hosted_key(case_id: str, attempt_no: int) -> str:
    """The idempotency key of attempt ``attempt_no`` paid on a processor's hosted page (asking
    again for the same attempt finds the same page; a postback names it)."""
    return f"collect:{case_id}:{attempt_no}:hosted"


def parse_hosted_key(key: str) -> tuple[str, int] | None:
    """``(case id, attempt number)`` of a :func:`hosted_key`, or None."""
    parts = key.split(":")
    if len(parts) != 4 or parts[0] != "collect" or parts[3] != "hosted":
        return None
    if not parts[1].startswith("case_") or not parts[2].isdigit() or len(parts[2]) > 9:
        return None
    return parts[1], int(parts[2])


def case_id_of(settlement_id: str) -> str:
    """The case of a failed settlement: derived, so opening it twice finds the first."""
    return "case_" + hashlib.sha256(settlement_id.encode()).hexdigest()[:24]


class Collector:
    """Collection over the ledger and the processor registry."""

    def __init__(
        self,
        ledger: Ledger,
        processors: ProcessorRegistry,
        config: CollectionConfig | None = None,
        relay: outbox.Relay | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
        *,
        renewals: Renewals | None = None,
    ) -> None:
        self.ledger = ledger
        self.processors = processors
        #: Records a membership debt's payment as its period's renewal (docs/subscriptions.md).
        self.renewals = renewals or Renewals(ledger.database, processors)
        self.config = config or CollectionConfig()
        #: Relays the outbox right after each commit that wrote to it (None: only the
        #: worker's loop relays).
        self.relay = relay
        #: Told :attr:`Checkpoint.COLLECTION_COMMITTED` after each such commit (the crash
        #: tests kill the process there; None in production).
        self.on_checkpoint = on_checkpoint

    async def _committed(self, now_ms: int) -> None:
        """A case change and its outbox row are committed: relay now, so the merchant is told
        at once. A failure here loses nothing (the row waits for the worker's relay)."""
        if self.on_checkpoint is not None:
            self.on_checkpoint(Checkpoint.COLLECTION_COMMITTED)
        if self.relay is None:
            return
        try:
            await self.relay.relay(now_ms)
        except (StoreError, LedgerUnavailable) as exc:
            log.warning("collection webhooks wait for the relay: %s", exc)

    # -- opening -----------------------------------------------------------------------------

    async def open_cases(self, now_ms: int) -> int:
        """Open a case for every declined or expired settlement that has none; return how many."""
        opened = 0
        async with self.ledger.database.connection() as conn:
            rows = await cases.unopened_failures(conn, at(now_ms), self.config.batch_max)
            for row in rows:
                reason = row["decline_reason"] or (
                    "hold_expired" if row["outcome"] == "expired" else "unrecognized"
                )
                opened_ms = now_ms
                decision = policy.next_retry(
                    reason=reason,
                    advice_code="",
                    retries_done=0,
                    last_attempt_ms=opened_ms,
                    card_retries_ms=(),
                    schedule_ms=self.config.retry_schedule_ms,
                    horizon_ms=opened_ms + self.config.retry_horizon_ms,
                )
                case = Case(
                    case_id=case_id_of(row["settlement_id"]),
                    settlement_id=row["settlement_id"],
                    customer=row["customer"],
                    currency=row["currency"],
                    amount_minor=int(row["accrued_minor"]),
                    processor=row["processor"],
                    payment_method=row["payment_method"],
                    origin="declined" if row["outcome"] == "declined" else "expired",
                    state=CaseState.OPEN,
                    decline_reason=reason,
                    advice_code="",
                    retries_n=0,
                    next_retry_at_ms=decision.at_ms if row["payment_method"] else None,
                    contact="",
                    language="en",
                    capture_id="",
                    opened_at_ms=opened_ms,
                    updated_at_ms=opened_ms,
                )
                async with conn.transaction():
                    if await cases.insert_case(conn, case):
                        opened += 1
        return opened

    async def open_uploaded(
        self, batch_id: str, row: Row, processor: str, now_ms: int
    ) -> tuple[str, str | None]:
        """Create an uploaded debt's case, receivable entry and link in one transaction:
        ``(case id, token)``; the token is None when this row of this batch exists already
        (a list uploaded again creates nothing twice)."""
        case_id = "case_" + hashlib.sha256(f"{batch_id}:{row.number}".encode()).hexdigest()[:24]
        case = Case(
            case_id=case_id,
            settlement_id="",
            customer=row.customer,
            currency=row.currency,
            amount_minor=row.amount_minor,
            processor=processor,
            payment_method="",
            origin="batch",
            state=CaseState.OPEN,
            decline_reason="",
            advice_code="",
            retries_n=0,
            next_retry_at_ms=None,
            contact=row.phone or row.email,
            language=row.language,
            capture_id="",
            opened_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        limits = self.config.link
        now = at(now_ms)
        async with self.ledger.database.connection() as conn, conn.transaction():
            if not await cases.insert_case(conn, case):
                return case_id, None
            await cases.post_receivable(conn, case, now)
            token = await self._insert_link(conn, case, limits, now_ms, f"batch {batch_id}")
        return case_id, token

    async def open_membership(
        self,
        *,
        subscription_id: str,
        period_no: int,
        customer: str,
        currency: str,
        amount_minor: int,
        processor: str,
        language: str,
        now_ms: int,
    ) -> str:
        """The case of a past-due membership period (opened now, or found: one per period). It
        has no card to retry — the subscription's dunning plan retries the card on file — and
        no receivable entry: paid, the period's own ``subscription_charge`` entry records it."""
        case = Case(
            case_id="case_"
            + hashlib.sha256(f"{MEMBERSHIP}:{subscription_id}:{period_no}".encode()).hexdigest()[
                :24
            ],
            settlement_id="",
            customer=customer,
            currency=currency,
            amount_minor=amount_minor,
            processor=processor,
            payment_method="",
            origin=MEMBERSHIP,
            state=CaseState.OPEN,
            decline_reason="",
            advice_code="",
            retries_n=0,
            next_retry_at_ms=None,
            contact="",
            language=language,
            capture_id="",
            opened_at_ms=now_ms,
            updated_at_ms=now_ms,
            subscription_id=subscription_id,
            period_no=period_no,
        )
        async with self.ledger.database.connection() as conn, conn.transaction():
            await cases.insert_case(conn, case)
        return case.case_id

    # -- charging ----------------------------------------------------------------------------

    async def retry(self, case_id: str, now_ms: int) -> ChargeResult:
        """Try the card on file once more, if the rules allow it now."""
        return await self._charge(case_id, "retry", None, now_ms, "")

    async def _reserve(
        self, case_id: str, source: str, payment_method: str | None, now_ms: int, link_id: str
    ) -> tuple[ChargeResult | None, Case | None, int, str]:
        now = at(now_ms)
        async with self.ledger.database.connection() as conn, conn.transaction():
            case = await cases.read(conn, case_id, lock=True)
            if case is None or case.state not in CHARGEABLE:
                return ChargeResult(ChargeCode.CLOSED), None, 0, ""
            if await cases.has_in_flight(conn, case_id):
                return ChargeResult(ChargeCode.BUSY), None, 0, ""
            card = payment_method or case.payment_method
            if source == "retry":
                await cases.lock_card(conn, card)
                window = retry_rules.VISA_REATTEMPT_WINDOW_MS
                recent = await cases.card_retries_ms(conn, card, at(now_ms - window))
                last = await cases.card_last_decline(conn, card)
                if last is not None and (last[0], last[1]) != (
                    case.decline_reason,
                    case.advice_code,
                ):
                    # Another case of this card was declined since: its answer (a "never"
                    # advice, a wait) binds this case too.
                    await cases.set_decline(conn, case_id, last[0], last[1])
                    case = dataclasses.replace(case, decline_reason=last[0], advice_code=last[1])
                card_wait_until = last[2] + retry_rules.advice_wait_ms(last[1]) if last else 0
                allowed = (
                    case.next_retry_at_ms is not None
                    and case.next_retry_at_ms <= now_ms
                    and card_wait_until <= now_ms
                    and retry_rules.may_retry(
                        case.decline_reason,
                        attempts_in_window=len(recent),
                        mastercard_advice=case.advice_code,
                    )
                )
                if not allowed:
                    # Postpone to when the card's rules allow it, or for good.
                    rule = retry_rules.rule_for(
                        case.decline_reason, mastercard_advice=case.advice_code
                    )
                    when: int | None = None
                    if case.next_retry_at_ms is not None and rule.retryable:
                        when = max(
                            case.next_retry_at_ms,
                            card_wait_until,
                            _window_free_ms(recent, now_ms),
                        )
                        if when > case.opened_at_ms + self.config.retry_horizon_ms:
                            when = None
                    await cases.set_retry(conn, case_id, _at(when), retried=False)
                    return ChargeResult(ChargeCode.NOT_ALLOWED), None, 0, ""
            number = await cases.next_attempt_no(conn, case_id)
            await cases.insert_attempt(conn, case_id, number, source, card, now, link_id)
        return None, case, number, card

    def _decide(self, case: Case, last_ms: int, recent: list[int]) -> policy.RetryDecision:
        return policy.next_retry(
            reason=case.decline_reason,
            advice_code=case.advice_code,
            retries_done=case.retries_n,
            last_attempt_ms=last_ms,
            card_retries_ms=recent,
            schedule_ms=self.config.retry_schedule_ms,
            horizon_ms=case.opened_at_ms + self.config.retry_horizon_ms,
        )

    async def _charge(
        self, case_id: str, source: str, payment_method: str | None, now_ms: int, link_id: str
    ) -> ChargeResult:
        try:
            refused, case, number, card = await self._reserve(
                case_id, source, payment_method, now_ms, link_id
            )
        except psycopg.errors.UniqueViolation:
            return ChargeResult(ChargeCode.BUSY)
        if refused is not None:
            return refused
        if case is None:  # pragma: no cover - _reserve returns a case whenever it reserved
            return ChargeResult(ChargeCode.CLOSED)
        return await self._run_attempt(case, number, source, card, now_ms, link_id)

    async def _run_attempt(
        self, case: Case, number: int, source: str, card: str, now_ms: int, link_id: str
    ) -> ChargeResult:
        key = f"collect:{case.case_id}:{number}"
        if case.origin == MEMBERSHIP:
            return await self._run_membership(case, number, source, card, now_ms, link_id)
        gateway = self.processors.for_processor(case.processor)
        try:
            hold = await gateway.authorize(
                idempotency_key=f"{key}:auth",
                payment_method=card,
                amount_minor=case.amount_minor,
                currency=case.currency,
            )
            if hold.approved:
                captured = await gateway.capture(
                    idempotency_key=f"{key}:capture",
                    auth_ref=hold.auth_ref,
                    amount_minor=case.amount_minor,
                )
                approved, capture_id = captured.approved, captured.capture_id
                reason = str(captured.decline_reason or "") if not approved else ""
                advice = captured.advice_code
            else:
                approved, capture_id = False, ""
                reason = str(hold.decline_reason or "unrecognized")
                advice = hold.advice_code
        except GatewayError as exc:
            log.warning(
                "collection attempt %s of %s: processor error: %s", number, case.case_id, exc
            )
            async with self.ledger.database.connection() as conn:
                await cases.finish_attempt(
                    conn, case.case_id, number, status="unknown", now=at(now_ms)
                )
            return ChargeResult(ChargeCode.UNAVAILABLE, number)
        if approved:
            return await self._record_paid(case, number, capture_id, now_ms)
        return await self._record_declined(case, number, source, reason, advice, now_ms, link_id)

    async def _run_membership(
        self, case: Case, number: int, source: str, card: str, now_ms: int, link_id: str
    ) -> ChargeResult:
        """Attempt ``number`` of a membership debt: an attempt of the period itself, recorded
        as any renewal (:func:`settlement.subscriptions.paylink.pay_period`), then here."""
        charged = await pay_period(
            self.renewals,
            case.subscription_id,
            case.period_no,
            key=f"collect:{case.case_id}:{number}",
            payment_method=card,
            now_ms=now_ms,
        )
        if charged.code is LinkCode.APPROVED or (
            charged.code is LinkCode.NOT_OWED and charged.capture_id
        ):
            # Paid now, or paid meanwhile by a dunning retry: the debt is settled, once.
            return await self._record_paid(case, number, charged.capture_id, now_ms)
        if charged.code is LinkCode.DECLINED:
            return await self._record_declined(
                case,
                number,
                source,
                charged.decline_reason,
                charged.advice_code,
                now_ms,
                link_id,
            )
        if charged.code is LinkCode.NOT_OWED:  # the membership ended unpaid: nothing to pay
            return await self._record_declined(
                case, number, source, NOTHING_OWED, "", now_ms, link_id
            )
        async with self.ledger.database.connection() as conn:
            if charged.code is LinkCode.BUSY:
                # A dunning retry of the period is in flight: nothing reached the processor.
                # The attempt ends (not counted against the link) and the member is told to try
                # again in a moment.
                await cases.finish_attempt(
                    conn,
                    case.case_id,
                    number,
                    status="declined",
                    now=at(now_ms),
                    decline_reason=PAYMENT_IN_PROGRESS,
                )
                return ChargeResult(ChargeCode.BUSY, number)
            # No answer: the sweep runs the same attempt again (the processor replays it).
            await cases.finish_attempt(conn, case.case_id, number, status="unknown", now=at(now_ms))
        return ChargeResult(ChargeCode.UNAVAILABLE, number)

    async def _record_paid(
        self, case: Case, number: int, capture_id: str, now_ms: int
    ) -> ChargeResult:
        now = at(now_ms)
        async with self.ledger.database.connection() as conn, conn.transaction():
            locked = await _finish_unrecorded(
                conn, case, number, now, status="approved", capture_id=capture_id
            )
            if isinstance(locked, ChargeResult):
                return locked
            await cases.transition(
                conn, locked, CaseEvent.PAY, now, f"attempt {number}", capture_id=capture_id
            )
            if case.origin != MEMBERSHIP:  # a period's payment has its own entry (code 30)
                await cases.post_paid(conn, locked, capture_id, now)
            await outbox.record(
                conn, PAID, case.case_id, self._data(case, number, capture_id=capture_id), now
            )
        await self._committed(now_ms)
        return ChargeResult(ChargeCode.PAID, number, capture_id=capture_id)

    async def _record_declined(
        self,
        case: Case,
        number: int,
        source: str,
        reason: str,
        advice: str,
        now_ms: int,
        link_id: str,
    ) -> ChargeResult:
        now = at(now_ms)
        async with self.ledger.database.connection() as conn, conn.transaction():
            locked = await _finish_unrecorded(
                conn,
                case,
                number,
                now,
                status="declined",
                decline_reason=reason,
                advice_code=advice,
            )
            if isinstance(locked, ChargeResult):
                return locked
            await cases.transition(
                conn, locked, CaseEvent.ATTEMPT_FAILED, now, f"attempt {number}: {reason}"
            )
            if source == "retry":
                await cases.set_decline(conn, case.case_id, reason, advice)
                updated = await cases.read(conn, case.case_id)
                if updated is not None:
                    window = retry_rules.VISA_REATTEMPT_WINDOW_MS
                    recent = await cases.card_retries_ms(
                        conn, updated.payment_method, at(now_ms - window)
                    )
                    decision = self._decide(
                        Case(**{**_fields(updated), "retries_n": updated.retries_n + 1}),
                        now_ms,
                        recent,
                    )
                    await cases.set_retry(conn, case.case_id, _at(decision.at_ms), retried=True)
            elif link_id:
                await cases.count_link(conn, link_id, opened=False, failed=True)
            await outbox.record(
                conn,
                ATTEMPT_FAILED,
                f"{case.case_id}:{number}",
                self._data(case, number, decline_reason=reason),
                now,
            )
        await self._committed(now_ms)
        return ChargeResult(ChargeCode.DECLINED, number, decline_reason=reason)

    def _data(self, case: Case, number: int, **extra: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "case_id": case.case_id,
            "settlement_id": case.settlement_id,
            "customer": case.customer,
            "amount_minor": case.amount_minor,
            "currency": case.currency,
            "attempt_no": number,
        }
        if "decline_reason" in extra:
            data["reason_words"] = reason_in_words(extra["decline_reason"])
        data.update(extra)
        return data

    # -- links -------------------------------------------------------------------------------

    async def create_link(self, case_id: str, now_ms: int, limits: LinkLimits | None = None) -> str:
        """Mint a pay link for a case and move it to ``link_sent``; return the token (shown
        once, sent to the customer, never stored)."""
        limits = limits or self.config.link
        async with self.ledger.database.connection() as conn, conn.transaction():
            case = await cases.read(conn, case_id, lock=True)
            if case is None:
                raise LookupError(f"no collection case {case_id}")
            return await self._insert_link(conn, case, limits, now_ms, None)

    async def set_contact(self, case_id: str, contact: str, language: str) -> None:
        """Remember how to reach the customer of a case, and in which language."""
        async with self.ledger.database.connection() as conn:
            await cases.set_contact(conn, case_id, contact, language)

    async def _link(self, conn: Any, token: str, *, lock: bool) -> tuple[LinkRow, Case] | None:
        link = await cases.link_by_digest(conn, links.token_digest(token), lock=lock)
        if link is None:
            return None
        case = await cases.read(conn, link.case_id)
        if case is None or not links.verify(
            self.config.link_secret,
            token,
            link_id=link.link_id,
            case_id=case.case_id,
            customer=case.customer,
        ):
            return None
        return link, case

    async def open_link(self, token: str, now_ms: int) -> tuple[Case | None, LinkRefusal | None]:
        """Open a link's page: count the open, or say why it cannot be used."""
        async with self.ledger.database.connection() as conn, conn.transaction():
            found = await self._link(conn, token, lock=True)
            if found is None:
                return None, LinkRefusal.NOT_FOUND
            link, case = found
            if case.state is CaseState.PAID or case.state is CaseState.WRITTEN_OFF:
                return case, LinkRefusal.CLOSED
            refusal = links.usable(link, now_ms, opening=True)
            if refusal is None:
                await cases.count_link(conn, link.link_id, opened=True, failed=False)
            return case, refusal

    async def check_link(self, token: str, now_ms: int) -> LinkRefusal | None:
        """Why a link cannot take a card now (None: it can), without counting an open."""
        async with self.ledger.database.connection() as conn:
            found = await self._link(conn, token, lock=False)
        if found is None:
            return LinkRefusal.NOT_FOUND
        link, case = found
        if case.state is CaseState.PAID or case.state is CaseState.WRITTEN_OFF:
            return LinkRefusal.CLOSED
        return links.usable(link, now_ms, opening=False)

    async def pay_link(self, token: str, payment_method: str, now_ms: int) -> ChargeResult:
        """The customer pays through a link with ``payment_method``."""
        async with self.ledger.database.connection() as conn:
            found = await self._link(conn, token, lock=False)
            if found is None:
                return ChargeResult(ChargeCode.CLOSED)
            link, case = found
            if links.usable(link, now_ms, opening=False) is not None:
                return ChargeResult(ChargeCode.CLOSED)
        return await self._charge(case.case_id, "link", payment_method, now_ms, link.link_id)

    # -- hosted payment pages ----------------------------------------------------------------

    async def start_hosted(
        self, token: str, return_url: str, now_ms: int
    ) -> tuple[ChargeResult | None, HostedStart | None]:
        """Send the customer of a link to the hosted payment page of the case's processor:
        reserve a link attempt (one in flight per case, like any charge) and ask the processor
        for a page under the attempt's key. The same link asking again while its hosted attempt
        waits gets the same page (same key), never a second one. Returns the refusal
        (``closed``, ``busy``, ``unavailable``), or where to send the customer."""
        async with self.ledger.database.connection() as conn:
            found = await self._link(conn, token, lock=False)
            if found is None:
                return ChargeResult(ChargeCode.CLOSED), None
            link, case = found
            if links.usable(link, now_ms, opening=False) is not None:
                return ChargeResult(ChargeCode.CLOSED), None
            waiting = await cases.in_flight_attempt(conn, case.case_id)
        gateway = self.processors.for_processor(case.processor)
        if not isinstance(gateway, HostedCheckout) or case.origin == MEMBERSHIP:
            # A membership debt is an attempt of its period, charged with a card token (the
            # sandbox's page); a processor's hosted page for it is not built yet.
            return ChargeResult(ChargeCode.CLOSED), None
        if (
            waiting is not None
            and waiting.link_id == link.link_id
            and waiting.payment_method.startswith(HOSTED_PREFIX)
        ):
            number = waiting.attempt_no
        else:
            try:
                refused, reserved, number, _ = await self._reserve(
                    case.case_id, "link", HOSTED_PREFIX, now_ms, link.link_id
                )
            except psycopg.errors.UniqueViolation:
                return ChargeResult(ChargeCode.BUSY), None
            if refused is not None:
                return refused, None
            case = reserved or case
        try:
            started = await gateway.start_hosted(
                HostedPage(
                    idempotency_key=hosted_key(case.case_id, number),
                    amount_minor=case.amount_minor,
                    currency=case.currency,
                    return_url=return_url,
                    description=f"Payment of {case.case_id}",
                )
            )
        except GatewayError as exc:
            # The attempt stays pending: asked again, the same key finds the same page; the
            # sweep gives it up after HOSTED_ABANDON_MS_DEFAULT.
            log.warning("hosted page of %s not started: %s", case.case_id, exc)
            return ChargeResult(ChargeCode.UNAVAILABLE, number), None
        if started.reference:
            async with self.ledger.database.connection() as conn:
                await cases.set_attempt_method(
                    conn, case.case_id, number, HOSTED_PREFIX + started.reference
                )
        return None, started

    async def complete_hosted(self, case_id: str, number: int, now_ms: int) -> ChargeResult:
        """Record what became of a hosted payment, as the processor itself answers (the return
        page, a postback and the sweep all end here; whoever records first wins, the others
        read the same answer). Still open: nothing is recorded, unless the page was left
        unpaid for HOSTED_ABANDON_MS_DEFAULT — then the attempt is given up (declined)."""
        async with self.ledger.database.connection() as conn:
            case = await cases.read(conn, case_id)
            attempt = await cases.read_attempt(conn, case_id, number)
        if case is None or attempt is None or not attempt.payment_method.startswith(HOSTED_PREFIX):
            return ChargeResult(ChargeCode.CLOSED)
        gateway = self.processors.for_processor(case.processor)
        if not isinstance(gateway, HostedCheckout):
            return ChargeResult(ChargeCode.CLOSED)
        try:
            result = await gateway.hosted_result(
                idempotency_key=hosted_key(case_id, number),
                reference=attempt.payment_method.removeprefix(HOSTED_PREFIX),
            )
        except GatewayError as exc:
            log.warning("hosted payment of %s not confirmed: %s", case_id, exc)
            return ChargeResult(ChargeCode.UNAVAILABLE, number)
        if attempt.status in ("approved", "declined"):
            if attempt.status == "declined" and result.status is HostedStatus.PAID:
                # Paid on a page given up as abandoned: money taken without a record. Loud,
                # for an operator (refund, or record it by hand); never a silent second state.
                log.error(
                    "hosted payment after its attempt was given up",
                    extra={"fields": {"case": case_id, "attempt": number}},
                )
            return _recorded(attempt)
        if result.status is HostedStatus.PAID:
            return await self._record_paid(case, number, result.capture_id, now_ms)
        if result.status is HostedStatus.DECLINED:
            reason = str(result.decline_reason or "unrecognized")
            return await self._record_declined(
                case, number, "link", reason, "", now_ms, attempt.link_id
            )
        if (
            result.status is HostedStatus.EXPIRED
            or now_ms - attempt.started_at_ms >= HOSTED_ABANDON_MS_DEFAULT
        ):
            return await self._record_declined(
                case, number, "link", HOSTED_PAGE_EXPIRED, "", now_ms, attempt.link_id
            )
        return ChargeResult(ChargeCode.BUSY, number)

    async def pending_hosted(self, token: str) -> int | None:
        """The number of the hosted attempt a link's customer is paying on, if one waits."""
        async with self.ledger.database.connection() as conn:
            found = await self._link(conn, token, lock=False)
            if found is None:
                return None
            link, case = found
            waiting = await cases.in_flight_attempt(conn, case.case_id)
        if (
            waiting is None
            or waiting.link_id != link.link_id
            or not waiting.payment_method.startswith(HOSTED_PREFIX)
        ):
            return None
        return waiting.attempt_no

    # -- closing -----------------------------------------------------------------------------

    async def write_off(self, case_id: str, now_ms: int, detail: str = "operator") -> bool:
        """Give a debt up (False: the case is not in a state that may be written off)."""
        now = at(now_ms)
        async with self.ledger.database.connection() as conn, conn.transaction():
            case = await cases.read(conn, case_id, lock=True)
            if case is None or case.state in (CaseState.PAID, CaseState.WRITTEN_OFF):
                return False
            if await cases.has_in_flight(conn, case_id):
                return False
            await cases.transition(conn, case, CaseEvent.WRITE_OFF, now, detail)
            if case.origin != MEMBERSHIP:  # a membership debt was never a receivable
                await cases.post_write_off(conn, case, now)
            await outbox.record(conn, WRITTEN_OFF, case_id, self._data(case, 0), now)
        await self._committed(now_ms)
        return True

    async def _close_spent(self, now_ms: int, report: SweepReport) -> None:
        now = at(now_ms)
        async with self.ledger.database.connection() as conn:
            ids = await cases.spent(conn, now, self.config.batch_max)
        for case_id in ids:
            event_type = ""
            closed: Case | None = None
            async with self.ledger.database.connection() as conn, conn.transaction():
                case = await cases.read(conn, case_id, lock=True)
                if case is None or case.state not in CHARGEABLE or case.next_retry_at_ms:
                    continue
                if await cases.has_in_flight(conn, case_id):
                    continue
                closed = case
                link = await cases.latest_link(conn, case_id)
                refusal = links.usable(link, now_ms, opening=False) if link else None
                if link is None:
                    await cases.transition(conn, case, CaseEvent.EXHAUST, now, "no retry, no link")
                    event_type = EXHAUSTED
                elif refusal is LinkRefusal.EXPIRED:
                    await cases.transition(conn, case, CaseEvent.EXPIRE, now, "link expired")
                    event_type = EXPIRED
                elif refusal is not None:
                    await cases.transition(conn, case, CaseEvent.EXHAUST, now, str(refusal))
                    event_type = EXHAUSTED
                if event_type:
                    await outbox.record(conn, event_type, case_id, self._data(case, 0), now)
            if event_type and closed is not None:
                if event_type == EXPIRED:
                    report.expired += 1
                else:
                    report.exhausted += 1
                await self._committed(now_ms)
        async with self.ledger.database.connection() as conn:
            old = await cases.stale(
                conn, at(now_ms - self.config.write_off_grace_ms), self.config.batch_max
            )
        for case_id in old:
            if await self.write_off(case_id, now_ms, "grace period over"):
                report.written_off += 1

    async def _insert_link(
        self,
        conn: psycopg.AsyncConnection[Any],
        case: Case,
        limits: LinkLimits,
        now_ms: int,
        note: str | None,
    ) -> str:
        """Mint a pay link for ``case`` and record it (only its digest), in the caller's
        transaction; the case moves to ``link_sent`` with ``note`` (default: the link's id).
        Returns the token, which is never stored or logged."""
        now = at(now_ms)
        link_id, token = links.mint(self.config.link_secret, case.case_id, case.customer)
        await cases.insert_link(
            conn,
            link_id=link_id,
            case_id=case.case_id,
            digest=links.token_digest(token),
            expires_at=at(now_ms + limits.expiry_s * 1_000),
            opens_max=limits.opens_max,
            failed_max=limits.failed_max,
            now=now,
        )
        await cases.transition(conn, case, CaseEvent.SEND_LINK, now, note or f"link {link_id[:6]}…")
        return token

    async def sweep(self, now_ms: int) -> SweepReport:
        """One pass: open new cases, resolve unknown attempts, run due retries, close the spent."""
        report = SweepReport()
        report.opened = await self.open_cases(now_ms)
        async with self.ledger.database.connection() as conn:
            unknown = await cases.in_flight(
                conn, at(now_ms - self.config.attempt_lease_ms), self.config.batch_max
            )
            due = await cases.due(conn, at(now_ms), self.config.batch_max)
        for case_id, number in unknown:
            await self._resume(case_id, number, now_ms, report)
        for case_id in due:
            result = await self.retry(case_id, now_ms)
            if result.code in (ChargeCode.PAID, ChargeCode.DECLINED):
                report.retried += 1
            if result.code is ChargeCode.PAID:
                report.paid += 1
        await self._close_spent(now_ms, report)
        return report

    async def _resume(self, case_id: str, number: int, now_ms: int, report: SweepReport) -> None:
        # Run the same attempt again: the processor replays its first answer by key.
        async with self.ledger.database.connection() as conn:
            case = await cases.read(conn, case_id)
            attempt = await cases.read_attempt(conn, case_id, number)
        if case is None or attempt is None:
            return
        if attempt.payment_method.startswith(HOSTED_PREFIX):
            # Paid (or not) on the processor's page: asked, never charged again from here.
            if (await self.complete_hosted(case_id, number, now_ms)).code is ChargeCode.PAID:
                report.paid += 1
            return
        result = await self._run_attempt(
            case, number, attempt.source, attempt.payment_method, now_ms, attempt.link_id
        )
        if result.code is ChargeCode.PAID:
            report.paid += 1

    # -- reading -----------------------------------------------------------------------------

    async def statement(self, case: Case) -> list[tuple[str, str, int]]:
        """The itemized lines of a case's debt (one line of the whole amount without any)."""
        if case.origin == MEMBERSHIP:
            return [("membership", f"{case.subscription_id} #{case.period_no}", case.amount_minor)]
        async with self.ledger.database.connection() as conn:
            lines = await cases.statement_lines(conn, case.settlement_id)
        return lines or [("tip", case.customer, case.amount_minor)]

    async def latest_attempt(self, case_id: str) -> cases.Attempt | None:
        """The newest attempt of a case."""
        async with self.ledger.database.connection() as conn:
            tried = await cases.attempts(conn, case_id)
        return tried[-1] if tried else None

    async def find_by_token(self, token: str) -> Case | None:
        """The case a valid token belongs to (None: unknown or forged), without counting."""
        async with self.ledger.database.connection() as conn:
            found = await self._link(conn, token, lock=False)
        return found[1] if found is not None else None

    async def case(self, case_id: str) -> dict[str, Any] | None:
        """A case, its attempts and its history, as the API shows them."""
        async with self.ledger.database.connection() as conn:
            case = await cases.read(conn, case_id)
            if case is None:
                return None
            tried = await cases.attempts(conn, case_id)
            events = await cases.history(conn, case_id)
        return {
            **_fields(case),
            "state": case.state.value,
            "attempts": [
                {
                    "attempt_no": a.attempt_no,
                    "source": a.source,
                    "status": a.status,
                    "decline_reason": a.decline_reason,
                    "reason_words": reason_in_words(a.decline_reason) if a.decline_reason else "",
                    "capture_id": a.capture_id,
                    "started_at_ms": a.started_at_ms,
                }
                for a in tried
            ],
            "history": [
                {
                    "seq": e.seq,
                    "event": e.event,
                    "from": e.from_state,
                    "to": e.to_state,
                    "detail": e.detail,
                    "at_ms": e.at_ms,
                }
                for e in events
            ],
        }


def _window_free_ms(recent: list[int], now_ms: int) -> int:
    """The first time the card has a free slot in its reattempt window."""
    window, limit = retry_rules.VISA_REATTEMPT_WINDOW_MS, retry_rules.VISA_REATTEMPTS_MAX
    inside = sorted(t for t in recent if t > now_ms - window)
    if len(inside) < limit:
        return now_ms
    return inside[len(inside) - limit] + window + 1


async def _finish_unrecorded(
    conn: psycopg.AsyncConnection[Any],
    case: Case,
    number: int,
    now: datetime,
    *,
    status: str,
    decline_reason: str = "",
    advice_code: str = "",
    capture_id: str = "",
) -> Case | ChargeResult:
    """Lock the case and record attempt ``number``'s answer while it is still unanswered, and
    return the locked case; otherwise the result to return: the attempt's recorded answer when
    another runner of it recorded it first (the same answer, once)."""
    locked = await cases.read(conn, case.case_id, lock=True)
    if locked is None:  # pragma: no cover - cases are never deleted
        return ChargeResult(ChargeCode.CLOSED)
    recorded = await cases.read_attempt(conn, case.case_id, number)
    if recorded is not None and recorded.status in ("approved", "declined"):
        return _recorded(recorded)
    await cases.finish_attempt(
        conn,
        case.case_id,
        number,
        status=status,
        now=now,
        decline_reason=decline_reason,
        advice_code=advice_code,
        capture_id=capture_id,
    )
    return locked


def _recorded(attempt: cases.Attempt) -> ChargeResult:
    if attempt.status == "approved":
        return ChargeResult(ChargeCode.PAID, attempt.attempt_no, capture_id=attempt.capture_id)
    return ChargeResult(
        ChargeCode.DECLINED, attempt.attempt_no, decline_reason=attempt.decline_reason
    )


def _fields(case: Case) -> dict[str, Any]:
    return {name: getattr(case, name) for name in Case.__slots__}


def _at(at_ms: int | None) -> datetime | None:
    return at(at_ms) if at_ms is not None else None
