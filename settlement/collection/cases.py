"""The collection aggregate in the ledger: cases, attempts, history, pay links, entries.

Every function runs in the caller's connection (and transaction, where the caller opened one);
the state a case moves to is always decided by :func:`settlement.collection.lifecycle.apply`
before :func:`transition` writes it, with the state read under ``FOR UPDATE``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from metering.lifecycle import TabState, next_state
from metering.outcomes import TabRef
from settlement.collection.lifecycle import TAB_EVENT, CaseEvent, CaseState, apply
from settlement.collection.links import LinkRow
from settlement.errors import SettlementError
from settlement.ledger import invoices, journal, settlements
from settlement.ledger.db import Connection
from settlement.ledger.journal import Entry, EntryCode, Posting
from settlement.ledger.times import at, ms


@dataclass(frozen=True, slots=True)
class Case:
    """A collection case as the ledger keeps it."""

    case_id: str
    settlement_id: str
    customer: str
    currency: str
    amount_minor: int
    processor: str
    payment_method: str
    origin: str
    state: CaseState
    decline_reason: str
    advice_code: str
    retries_n: int
    next_retry_at_ms: int | None
    contact: str
    language: str
    capture_id: str
    opened_at_ms: int
    updated_at_ms: int
    #: A membership debt (origin ``membership``): the subscription and its unpaid period.
    subscription_id: str = ""
    period_no: int = 0


#: The origin of a case that is a membership's unpaid period (migration 0011).
MEMBERSHIP: Final = "membership"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One charge attempt of a case."""

    attempt_no: int
    source: str
    link_id: str
    payment_method: str
    status: str
    decline_reason: str
    advice_code: str
    capture_id: str
    started_at_ms: int
    finished_at_ms: int | None


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One transition of a case."""

    seq: int
    event: str
    from_state: str
    to_state: str
    detail: str
    at_ms: int


class TransitionRefused(SettlementError):
    """A transition the lifecycle table does not allow (a bug in the caller: the collector
    checks the state under the case's lock before it asks)."""


def _case(row: dict[str, Any]) -> Case:
    return Case(
        case_id=row["case_id"],
        settlement_id=row["settlement_id"] or "",
        customer=row["customer"],
        currency=row["currency"],
        amount_minor=int(row["amount_minor"]),
        processor=row["processor"],
        payment_method=row["payment_method"],
        origin=row["origin"],
        state=CaseState(row["state"]),
        decline_reason=row["decline_reason"],
        advice_code=row["advice_code"],
        retries_n=int(row["retries_n"]),
        next_retry_at_ms=ms(row["next_retry_at"]) if row["next_retry_at"] else None,
        contact=row["contact"],
        language=row["language"],
        capture_id=row["capture_id"] or "",
        opened_at_ms=ms(row["opened_at"]),
        updated_at_ms=ms(row["updated_at"]),
        subscription_id=row["subscription_id"] or "",
        period_no=row["period_no"] or 0,
    )


async def unopened_failures(conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
    """Declined or expired settlements with money owed and no case yet, settled by ``now``
    (oldest first)."""
    cursor = await conn.execute(
        """
        SELECT s.settlement_id, s.customer, s.currency, s.accrued_minor, s.processor,
               s.payment_method, s.outcome, s.decline_reason, s.outcome_at
        FROM settlements s
        WHERE s.outcome IN ('declined', 'expired') AND s.accrued_minor > 0
          AND s.outcome_at <= %s
          AND NOT EXISTS (SELECT 1 FROM collection_cases c
                          WHERE c.settlement_id = s.settlement_id)
        ORDER BY s.outcome_at
        LIMIT %s
        """,
        (now, limit),
    )
    return list(await cursor.fetchall())


async def insert_case(conn: Connection, case: Case) -> bool:
    """Write a new case (False: one exists for that settlement or id already)."""
    cursor = await conn.execute(
        """
        INSERT INTO collection_cases (
            case_id, settlement_id, customer, currency, amount_minor, processor,
            payment_method, origin, state, decline_reason, advice_code, retries_n,
            next_retry_at, contact, language, opened_at, updated_at, subscription_id,
            period_no)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT DO NOTHING
        RETURNING case_id
        """,
        (
            case.case_id,
            case.settlement_id or None,
            case.customer,
            case.currency,
            case.amount_minor,
            case.processor,
            case.payment_method,
            case.origin,
            case.state.value,
            case.decline_reason,
            case.advice_code,
            at(case.next_retry_at_ms) if case.next_retry_at_ms is not None else None,
            case.contact,
            case.language,
            at(case.opened_at_ms),
            at(case.updated_at_ms),
            case.subscription_id or None,
            case.period_no if case.subscription_id else None,
        ),
    )
    return await cursor.fetchone() is not None


async def read(conn: Connection, case_id: str, *, lock: bool = False) -> Case | None:
    """One case (``lock``: ``FOR UPDATE``, in the caller's transaction)."""
    cursor = await conn.execute(
        "SELECT * FROM collection_cases WHERE case_id = %s FOR UPDATE"
        if lock
        else "SELECT * FROM collection_cases WHERE case_id = %s",
        (case_id,),
    )
    row = await cursor.fetchone()
    return _case(row) if row is not None else None


async def due(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Ids of chargeable cases whose retry is due."""
    cursor = await conn.execute(
        """
        SELECT case_id FROM collection_cases
        WHERE state IN ('open', 'link_sent') AND next_retry_at <= %s
        ORDER BY next_retry_at LIMIT %s
        """,
        (now, limit),
    )
    return [row["case_id"] for row in await cursor.fetchall()]


async def without_retry(conn: Connection, states: tuple[str, ...], limit: int) -> list[str]:
    """Ids of cases in ``states`` with no retry to come."""
    cursor = await conn.execute(
        """
        SELECT case_id FROM collection_cases
        WHERE state = ANY(%s) AND next_retry_at IS NULL
        ORDER BY updated_at LIMIT %s
        """,
        (list(states), limit),
    )
    return [row["case_id"] for row in await cursor.fetchall()]


async def in_flight(conn: Connection, stale_before: datetime, limit: int) -> list[tuple[str, int]]:
    """Attempts to run again: those whose outcome is unknown (the processor did not answer),
    and those left ``pending`` since before ``stale_before`` (their caller died). A pending
    attempt younger than that is some caller's, running now: it is left alone."""
    cursor = await conn.execute(
        """
        SELECT case_id, attempt_no FROM collection_attempts
        WHERE status = 'unknown' OR (status = 'pending' AND started_at < %s)
        ORDER BY started_at LIMIT %s
        """,
        (stale_before, limit),
    )
    return [(row["case_id"], int(row["attempt_no"])) for row in await cursor.fetchall()]


async def card_retries_ms(conn: Connection, payment_method: str, since: datetime) -> list[int]:
    """Times of the automatic retries of one card (every case) since ``since``."""
    cursor = await conn.execute(
        """
        SELECT started_at FROM collection_attempts
        WHERE source = 'retry' AND payment_method = %s AND started_at > %s
        """,
        (payment_method, since),
    )
    return [ms(row["started_at"]) for row in await cursor.fetchall()]


async def lock_card(conn: Connection, payment_method: str) -> None:
    """Serialize retries of one card (transaction-wide), so the reattempt count is exact."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 15))", ("card:" + payment_method,)
    )


async def next_attempt_no(conn: Connection, case_id: str) -> int:
    """The number the next attempt of a case takes."""
    cursor = await conn.execute(
        "SELECT coalesce(max(attempt_no), 0) + 1 AS n FROM collection_attempts WHERE case_id = %s",
        (case_id,),
    )
    row = await cursor.fetchone()
    return int(row["n"]) if row is not None else 1


async def has_in_flight(conn: Connection, case_id: str) -> bool:
    """Whether an attempt of the case waits for its outcome."""
    cursor = await conn.execute(
        "SELECT 1 FROM collection_attempts WHERE case_id = %s AND status IN ('pending', 'unknown')",
        (case_id,),
    )
    return await cursor.fetchone() is not None


async def insert_attempt(
    conn: Connection,
    case_id: str,
    attempt_no: int,
    source: str,
    payment_method: str,
    now: datetime,
    link_id: str = "",
) -> None:
    """Reserve an attempt (``pending``): the partial unique index allows one in flight."""
    await conn.execute(
        """
        INSERT INTO collection_attempts (case_id, attempt_no, source, link_id, payment_method,
                                         status, started_at)
        VALUES (%s, %s, %s, %s, %s, 'pending', %s)
        """,
        (case_id, attempt_no, source, link_id or None, payment_method, now),
    )


async def read_attempt(conn: Connection, case_id: str, attempt_no: int) -> Attempt | None:
    """One attempt."""
    cursor = await conn.execute(
        "SELECT * FROM collection_attempts WHERE case_id = %s AND attempt_no = %s",
        (case_id, attempt_no),
    )
    row = await cursor.fetchone()
    return _attempt(row) if row is not None else None


def _attempt(row: dict[str, Any]) -> Attempt:
    return Attempt(
        attempt_no=int(row["attempt_no"]),
        source=row["source"],
        link_id=row["link_id"] or "",
        payment_method=row["payment_method"],
        status=row["status"],
        decline_reason=row["decline_reason"],
        advice_code=row["advice_code"],
        capture_id=row["capture_id"] or "",
        started_at_ms=ms(row["started_at"]),
        finished_at_ms=ms(row["finished_at"]) if row["finished_at"] else None,
    )


async def finish_attempt(
    conn: Connection,
    case_id: str,
    attempt_no: int,
    *,
    status: str,
    now: datetime,
    decline_reason: str = "",
    advice_code: str = "",
    capture_id: str = "",
) -> None:
    """Record an attempt's outcome."""
    await conn.execute(
        """
        UPDATE collection_attempts
        SET status = %s, decline_reason = %s, advice_code = %s, capture_id = %s,
            finished_at = %s,
            finished_seq = CASE WHEN %s IN ('approved', 'declined')
                                THEN nextval('collection_attempts_finished') END
        WHERE case_id = %s AND attempt_no = %s
        """,
        (status, decline_reason, advice_code, capture_id or None, now, status, case_id, attempt_no),
    )


async def attempts(conn: Connection, case_id: str) -> list[Attempt]:
    """Every attempt of a case, in order."""
    cursor = await conn.execute(
        "SELECT * FROM collection_attempts WHERE case_id = %s ORDER BY attempt_no", (case_id,)
    )
    return [_attempt(row) for row in await cursor.fetchall()]


async def history(conn: Connection, case_id: str) -> list[HistoryEvent]:
    """Every transition of a case, in order."""
    cursor = await conn.execute(
        "SELECT * FROM collection_events WHERE case_id = %s ORDER BY seq", (case_id,)
    )
    return [
        HistoryEvent(
            int(row["seq"]),
            row["event"],
            row["from_state"],
            row["to_state"],
            row["detail"],
            ms(row["at"]),
        )
        for row in await cursor.fetchall()
    ]


async def transition(
    conn: Connection,
    case: Case,
    event: CaseEvent,
    now: datetime,
    detail: str = "",
    *,
    capture_id: str = "",
) -> CaseState:
    """Apply ``event`` to ``case`` (read under ``FOR UPDATE`` in this transaction): write the
    new state (with the capture that paid it, for ``pay``) and its history row. Raises
    :class:`TransitionRefused` if the table forbids it."""
    target = apply(case.state, event)
    if target is None:
        raise TransitionRefused(f"case {case.case_id}: {event} is not allowed in {case.state}")
    closing = target in TAB_EVENT
    await conn.execute(
        """
        UPDATE collection_cases SET state = %s, updated_at = %s,
            closed_at = CASE WHEN %s THEN %s ELSE closed_at END,
            next_retry_at = CASE WHEN %s THEN NULL ELSE next_retry_at END,
            capture_id = coalesce(%s, capture_id)
        WHERE case_id = %s
        """,
        (target.value, now, closing, now, closing, capture_id or None, case.case_id),
    )
    await conn.execute(
        """
        INSERT INTO collection_events (case_id, seq, event, from_state, to_state, detail, at)
        SELECT %s, coalesce(max(seq), 0) + 1, %s, %s, %s, %s, %s
        FROM collection_events WHERE case_id = %s
        """,
        (case.case_id, event.value, case.state.value, target.value, detail, now, case.case_id),
    )
    if closing and case.settlement_id:
        await _close_tab(conn, case.settlement_id, target)
    return target


async def _close_tab(conn: Connection, settlement_id: str, target: CaseState) -> None:
    # The tab follows its case by its own table's explicit event: collect or write off.
    cursor = await conn.execute(
        "SELECT state FROM settlements WHERE settlement_id = %s FOR UPDATE", (settlement_id,)
    )
    row = await cursor.fetchone()
    if row is None:
        return
    tab_state = next_state(TabState(row["state"]), TAB_EVENT[target])
    if tab_state is None:
        raise TransitionRefused(f"tab {settlement_id} in {row['state']} cannot {target}")
    await conn.execute(
        "UPDATE settlements SET state = %s WHERE settlement_id = %s",
        (tab_state.value, settlement_id),
    )
    if target is CaseState.PAID:
        await conn.execute(
            "UPDATE model_earnings SET collected = true WHERE settlement_id = %s",
            (settlement_id,),
        )


async def set_retry(
    conn: Connection, case_id: str, next_retry_at: datetime | None, *, retried: bool
) -> None:
    """Set a case's next retry time (None: none follows); count a retry made."""
    await conn.execute(
        """
        UPDATE collection_cases SET next_retry_at = %s,
            retries_n = retries_n + CASE WHEN %s THEN 1 ELSE 0 END
        WHERE case_id = %s
        """,
        (next_retry_at, retried, case_id),
    )


async def set_decline(conn: Connection, case_id: str, reason: str, advice_code: str) -> None:
    """Remember the newest decline of a case (it governs the next retry)."""
    await conn.execute(
        "UPDATE collection_cases SET decline_reason = %s, advice_code = %s WHERE case_id = %s",
        (reason, advice_code, case_id),
    )


async def shares(conn: Connection, settlement_id: str) -> tuple[list[tuple[str, int]], int]:
    """Each room's share of a settlement and the platform's part."""
    cursor = await conn.execute(
        "SELECT room, share_minor FROM model_earnings WHERE settlement_id = %s ORDER BY room",
        (settlement_id,),
    )
    rooms = [(row["room"], int(row["share_minor"])) for row in await cursor.fetchall()]
    cursor = await conn.execute(
        "SELECT platform_minor FROM settlements WHERE settlement_id = %s", (settlement_id,)
    )
    row = await cursor.fetchone()
    return rooms, int(row["platform_minor"]) if row is not None else 0


def owed_account(case: Case) -> journal.Account:
    """The account that holds a case's debt: its tab's, or the uploaded debt's own."""
    return journal.customer_tab(case.settlement_id or f"batch:{case.case_id}", case.currency)


async def post_receivable(conn: Connection, case: Case, now: datetime) -> None:
    """The entry of an uploaded debt (no tab): the customer owes it; the platform's part
    waits in ``earnings_pending`` like a failed tab's shares."""
    postings = (
        Posting(owed_account(case), case.amount_minor),
        Posting(journal.earnings_pending(case.currency), -case.amount_minor),
    )
    await journal.post(
        conn,
        [
            Entry(
                f"collection_receivable:{case.case_id}",
                EntryCode.COLLECTION_RECEIVABLE,
                case.currency,
                postings,
                now,
            )
        ],
    )


async def post_paid(conn: Connection, case: Case, capture_id: str, now: datetime) -> None:
    """The entries of a collected debt: ``collection_capture`` (the processor owes it, the
    customer's tab account is cleared) and ``collection_earnings`` (the shares leave
    ``earnings_pending`` for each room's ``model_payable`` and ``platform_revenue``)."""
    currency, amount, sid = case.currency, case.amount_minor, case.settlement_id
    owed = owed_account(case)
    capture = (
        Posting(journal.processor_clearing(case.processor, currency), amount),
        Posting(owed, -amount),
    )
    await journal.post(
        conn,
        [
            Entry(
                f"collection_capture:{case.case_id}",
                EntryCode.COLLECTION_CAPTURE,
                currency,
                capture,
                now,
                sid,
            )
        ],
    )
    # An uploaded debt has no rooms: all of it is the platform's.
    rooms, platform = await shares(conn, sid) if sid else ([], amount)
    earned = [Posting(journal.earnings_pending(currency), amount)]
    earned += [Posting(journal.model_payable(room, currency), -share) for room, share in rooms]
    earned.append(Posting(journal.platform_revenue(currency), -platform))
    await journal.post(
        conn,
        [
            Entry(
                f"collection_earnings:{case.case_id}",
                EntryCode.COLLECTION_EARNINGS,
                currency,
                tuple(earned),
                now,
                sid,
            )
        ],
    )
    # Last: the invoice takes its series' counter row, held until the commit.
    await _invoice_collected(conn, case, capture_id, now)


async def _invoice_collected(conn: Connection, case: Case, capture_id: str, now: datetime) -> None:
    """The invoice of a tab's collected debt, as a capture has one (docs/invoices.md); its tax
    entry comes out of the platform's part. An uploaded debt (no tab) documents no lines: it
    has no invoice here."""
    if not case.settlement_id:
        return
    customer, _, tab_id = case.settlement_id.partition("/")
    invoice = await settlements.collected_tab_invoice(
        conn,
        TabRef(customer, tab_id),
        capture_id=capture_id,
        entry_id=f"collection_capture:{case.case_id}",
        collected_at_ms=ms(now),
    )
    if invoice is not None:
        await invoices.issue_for_settlement(conn, invoice, tab_id)


async def post_write_off(conn: Connection, case: Case, now: datetime) -> None:
    """The entry of a debt given up: the receivable is reversed (the tab account is cleared,
    the pending shares are never earned)."""
    currency, amount, sid = case.currency, case.amount_minor, case.settlement_id
    postings = (
        Posting(journal.earnings_pending(currency), amount),
        Posting(owed_account(case), -amount),
    )
    await journal.post(
        conn,
        [
            Entry(
                f"collection_write_off:{case.case_id}",
                EntryCode.COLLECTION_WRITE_OFF,
                currency,
                postings,
                now,
                sid,
            )
        ],
    )


async def insert_link(
    conn: Connection,
    *,
    link_id: str,
    case_id: str,
    digest: str,
    expires_at: datetime,
    opens_max: int | None,
    failed_max: int,
    now: datetime,
) -> None:
    """Write a new pay link (its token's digest, never the token)."""
    await conn.execute(
        """
        INSERT INTO pay_links (link_id, case_id, token_sha256, expires_at, opens_max,
                               failed_max, created_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        """,
        (link_id, case_id, digest, expires_at, opens_max, failed_max, now),
    )


def _link(row: dict[str, Any]) -> LinkRow:
    return LinkRow(
        link_id=row["link_id"],
        case_id=row["case_id"],
        expires_at_ms=ms(row["expires_at"]),
        opens_max=row["opens_max"],
        opens_n=int(row["opens_n"]),
        failed_max=int(row["failed_max"]),
        failed_n=int(row["failed_n"]),
    )


async def link_by_digest(conn: Connection, digest: str, *, lock: bool = False) -> LinkRow | None:
    """The link whose token has this digest."""
    cursor = await conn.execute(
        "SELECT * FROM pay_links WHERE token_sha256 = %s FOR UPDATE"
        if lock
        else "SELECT * FROM pay_links WHERE token_sha256 = %s",
        (digest,),
    )
    row = await cursor.fetchone()
    return _link(row) if row is not None else None


async def latest_link(conn: Connection, case_id: str) -> LinkRow | None:
    """The newest link of a case."""
    cursor = await conn.execute(
        "SELECT * FROM pay_links WHERE case_id = %s ORDER BY link_no DESC LIMIT 1",
        (case_id,),
    )
    row = await cursor.fetchone()
    return _link(row) if row is not None else None


async def count_link(conn: Connection, link_id: str, *, opened: bool, failed: bool) -> None:
    """Count an open or a declined attempt against a link."""
    await conn.execute(
        """
        UPDATE pay_links SET opens_n = opens_n + %s, failed_n = failed_n + %s
        WHERE link_id = %s
        """,
        (int(opened), int(failed), link_id),
    )


async def statement_lines(conn: Connection, settlement_id: str) -> list[tuple[str, str, int]]:
    """The itemized lines a case's debt is made of: ``(kind, room, amount_minor)``, in order."""
    cursor = await conn.execute(
        """
        SELECT kind, room, amount_minor FROM settlement_lines
        WHERE settlement_id = %s ORDER BY seq, line_id
        """,
        (settlement_id,),
    )
    return [(row["kind"], row["room"], int(row["amount_minor"])) for row in await cursor.fetchall()]


async def card_last_decline(conn: Connection, payment_method: str) -> tuple[str, str, int] | None:
    """The newest automatic retry of a card (every case), if it was declined:
    ``(reason, advice code, started ms)``. A card's advice code binds every case of the card."""
    cursor = await conn.execute(
        """
        SELECT status, decline_reason, advice_code, started_at FROM collection_attempts
        WHERE source = 'retry' AND payment_method = %s AND finished_seq IS NOT NULL
        ORDER BY finished_seq DESC LIMIT 1
        """,
        (payment_method,),
    )
    row = await cursor.fetchone()
    if row is None or row["status"] != "declined":
        return None
    return row["decline_reason"], row["advice_code"], ms(row["started_at"])


async def spent(conn: Connection, now: datetime, limit: int) -> list[str]:
    """Chargeable cases with no retry to come whose newest link can no longer be used (expired
    or out of attempts), and open cases with no retry and no link."""
    cursor = await conn.execute(
        """
        SELECT c.case_id FROM collection_cases c
        LEFT JOIN LATERAL (
            SELECT expires_at, failed_n, failed_max FROM pay_links l
            WHERE l.case_id = c.case_id ORDER BY link_no DESC LIMIT 1
        ) link ON true
        WHERE c.state IN ('open', 'link_sent') AND c.next_retry_at IS NULL
          AND (link.expires_at IS NULL OR link.expires_at <= %s
               OR link.failed_n >= link.failed_max)
        ORDER BY c.updated_at LIMIT %s
        """,
        (now, limit),
    )
    return [row["case_id"] for row in await cursor.fetchall()]


async def stale(conn: Connection, before: datetime, limit: int) -> list[str]:
    """Exhausted or expired cases untouched since ``before`` (the write-off grace is over)."""
    cursor = await conn.execute(
        """
        SELECT case_id FROM collection_cases
        WHERE state IN ('exhausted', 'expired') AND updated_at <= %s
        ORDER BY updated_at LIMIT %s
        """,
        (before, limit),
    )
    return [row["case_id"] for row in await cursor.fetchall()]


async def set_contact(conn: Connection, case_id: str, contact: str, language: str) -> None:
    """Remember how to reach the customer of a case, and in which language."""
    await conn.execute(
        "UPDATE collection_cases SET contact = %s, language = %s WHERE case_id = %s",
        (contact, language, case_id),
    )


async def in_flight_attempt(conn: Connection, case_id: str) -> Attempt | None:
    """The attempt of a case that waits for its outcome, if any (at most one: an index)."""
    cursor = await conn.execute(
        """
        SELECT * FROM collection_attempts
        WHERE case_id = %s AND status IN ('pending', 'unknown')
        """,
        (case_id,),
    )
    row = await cursor.fetchone()
    return _attempt(row) if row is not None else None


async def set_attempt_method(
    conn: Connection, case_id: str, attempt_no: int, payment_method: str
) -> None:
    """Record what an attempt pays with once it is known (a hosted page's reference)."""
    await conn.execute(
        """
        UPDATE collection_attempts SET payment_method = %s
        WHERE case_id = %s AND attempt_no = %s AND status = 'pending'
        """,
        (payment_method, case_id, attempt_no),
    )
