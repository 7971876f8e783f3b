"""A settled tab in the ledger: written once per settlement id, read back unchanged.

:func:`record` writes, in the caller's transaction, everything Redis knew of a tab once its
settlement had an outcome: the settlement row (amount, outcome, capture id, the processor and
its reference, the decline reason), the itemized lines, each show's billed seconds, each model
room's gross and share, and the journal entries of the outcome (:func:`entries_for`). The
settlement id is unique, so recording again writes nothing — the worker may repeat it after
any crash. The database checks conservation at commit: the lines sum to the accrued amount,
the shares plus the platform's part to the same, and a capture takes exactly that amount.

:func:`read_tab` rebuilds the :class:`~metering.outcomes.Tab` and the
:class:`~settlement.scripts.SettlementRecord` Redis held, so statements and lookups give the
same answers once the Redis keys have expired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from psycopg.types.json import Jsonb

from metering.lifecycle import TabState
from metering.outcomes import Line, SecondHold, Tab, TabRef
from settlement.ledger import allowances, invoices, journal
from settlement.ledger.db import Connection
from settlement.ledger.errors import LedgerMismatch
from settlement.ledger.journal import Entry, EntryCode, Posting
from settlement.ledger.times import at, at_or_none, ms
from settlement.outcomes import SettlementOutcome
from settlement.scripts import SettlementRecord
from settlement.statements import Statement, StatementLine, itemize


@dataclass(frozen=True, slots=True)
class ShowFacts:
    """One show a tab paid for, as its session ended."""

    session_id: str
    room: str
    kind: str
    rate_per_minute_minor: int
    minimum_s: int
    started_at_ms: int
    ended_at_ms: int
    billed_s: int
    amount_minor: int
    end_reason: str


@dataclass(frozen=True, slots=True)
class SettlementFacts:
    """Everything the ledger records of one settled tab."""

    tab: Tab
    record: SettlementRecord
    statement: Statement
    processor: str
    shows: tuple[ShowFacts, ...] = ()
    processor_ref: str = ""

    @property
    def settlement_id(self) -> str:
        """``customer/tab_id``, unique per tab."""
        return settlement_id_of(self.tab.ref)

    @property
    def outcome(self) -> SettlementOutcome:
        """How the settlement ended (a recorded tab always has an outcome)."""
        if self.record.outcome is None:
            raise LedgerMismatch(f"tab {self.settlement_id} has no outcome to record")
        return self.record.outcome


def settlement_id_of(ref: TabRef) -> str:
    """The settlement id of a tab: ``customer/tab_id`` (``/`` never occurs in ids)."""
    return f"{ref.customer}/{ref.tab_id}"


#: Line id prefix of a catalog purchase (metering/lua/apply_purchase.lua). A purchase line is
#: recorded with kind ``purchase``, its item's id and name and the item's kind (migration 0010,
#: docs/purchases.md); the database checks that only ``buy:`` lines are purchases.
PURCHASE_LINE_PREFIX: Final = "buy:"


def charged_lines(lines: Sequence[Line]) -> list[Line]:
    """The lines that are part of the capture: every line but voided purchases (amount 0)."""
    return [line for line in lines if not (line.kind == "purchase" and line.amount_minor == 0)]


def gross_by_room(lines: Sequence[Line]) -> dict[str, int]:
    """What the lines paid each room, before the model's share (voided purchases paid none;
    a room whose lines a member's allowance covered whole was paid nothing and is left out)."""
    gross: dict[str, int] = {}
    for line in charged_lines(lines):
        gross[line.room] = gross.get(line.room, 0) + line.amount_minor
    return {room: amount for room, amount in gross.items() if amount > 0}


def entries_for(facts: SettlementFacts) -> list[Entry]:
    """The journal entries of a settlement's outcome (none when nothing was accrued).

    - captured: ``tab_charge`` (the customer's tab owes the lines; each model room earns its
      share, the platform the rest) and ``tab_capture`` (the processor owes the platform what
      it captured; the tab owes nothing);
    - declined or expired: ``tab_receivable`` (the tab owes the lines; the shares wait in
      ``earnings_pending`` until collection decides).
    """
    tab, statement = facts.tab, facts.statement
    sid, currency, amount = facts.settlement_id, tab.currency, tab.accrued_minor
    if amount == 0 or facts.outcome is SettlementOutcome.VOIDED:
        return []
    posted_at = at(facts.record.outcome_at_ms)
    owed = journal.customer_tab(sid, currency)
    if facts.outcome is SettlementOutcome.CAPTURED:
        charge = [Posting(owed, amount)]
        charge += [
            Posting(journal.model_payable(room, currency), -share)
            for room, share in statement.model_shares
        ]
        charge.append(Posting(journal.platform_revenue(currency), -statement.platform_minor))
        capture = [
            Posting(journal.processor_clearing(facts.processor, currency), amount),
            Posting(owed, -amount),
        ]
        return [
            Entry(
                f"tab_charge:{sid}", EntryCode.TAB_CHARGE, currency, tuple(charge), posted_at, sid
            ),
            Entry(
                f"tab_capture:{sid}",
                EntryCode.TAB_CAPTURE,
                currency,
                tuple(capture),
                posted_at,
                sid,
            ),
        ]
    receivable = (Posting(owed, amount), Posting(journal.earnings_pending(currency), -amount))
    return [
        Entry(
            f"tab_receivable:{sid}", EntryCode.TAB_RECEIVABLE, currency, receivable, posted_at, sid
        )
    ]


async def record(conn: Connection, facts: SettlementFacts) -> bool:
    """Write ``facts`` (see the module docstring) in one transaction; False if this settlement
    was recorded before (then nothing is written). Raises :class:`LedgerMismatch` if the
    earlier record has another outcome or amount."""
    tab, rec = facts.tab, facts.record
    sid = facts.settlement_id
    async with conn.transaction():
        cursor = await conn.execute(
            """
            INSERT INTO settlements (
                settlement_id, customer, tab_id, currency, processor, auth_ref, payment_method,
                second_holds, opened_cap_minor, outcome, state, freeze_reason, cap_minor,
                accrued_minor, captured_minor,
                released_minor, platform_minor, capture_id, processor_ref, idempotency_key,
                attempts, decline_reason, retryable, tab_version, opened_at, active_at,
                exhausted_at, frozen_at, capture_before, started_at, outcome_at)
            VALUES (
                %(sid)s, %(customer)s, %(tab_id)s, %(currency)s, %(processor)s, %(auth_ref)s,
                coalesce(nullif(%(payment_method)s, ''),
                         (SELECT payment_method FROM holds
                          WHERE customer = %(customer)s AND tab_id = %(tab_id)s
                          AND kind = 'authorize' ORDER BY recorded_at LIMIT 1), ''),
                %(second_holds)s, %(opened_cap)s, %(outcome)s, %(state)s, %(freeze_reason)s,
                %(cap)s, %(accrued)s, %(captured)s,
                %(released)s, %(platform)s, %(capture_id)s, %(processor_ref)s,
                %(idempotency_key)s, %(attempts)s, %(decline_reason)s, %(retryable)s,
                %(version)s, %(opened_at)s, %(active_at)s, %(exhausted_at)s, %(frozen_at)s,
                %(capture_before)s, %(started_at)s, %(outcome_at)s)
            ON CONFLICT (settlement_id) DO NOTHING
            RETURNING settlement_id
            """,
            {
                "sid": sid,
                "customer": tab.ref.customer,
                "tab_id": tab.ref.tab_id,
                "currency": tab.currency,
                "processor": facts.processor,
                "auth_ref": tab.auth_ref,
                "payment_method": tab.payment_method,
                "second_holds": Jsonb([dataclasses.asdict(h) for h in tab.second_holds]),
                "opened_cap": tab.opened_cap_minor,
                "outcome": facts.outcome.value,
                "state": tab.state.value,
                "freeze_reason": tab.freeze_reason,
                "cap": tab.cap_minor,
                "accrued": tab.accrued_minor,
                "captured": rec.captured_minor,
                "released": rec.released_minor,
                "platform": facts.statement.platform_minor,
                "capture_id": rec.capture_id or None,
                "processor_ref": facts.processor_ref,
                "idempotency_key": rec.idempotency_key,
                "attempts": rec.attempts,
                "decline_reason": rec.decline_reason,
                "retryable": rec.retryable,
                "version": tab.version,
                "opened_at": at_or_none(tab.opened_at_ms),
                "active_at": at_or_none(tab.active_at_ms),
                "exhausted_at": at_or_none(tab.exhausted_at_ms),
                "frozen_at": at_or_none(tab.frozen_at_ms),
                "capture_before": at_or_none(tab.capture_before_ms),
                "started_at": at_or_none(rec.started_at_ms),
                "outcome_at": at(rec.outcome_at_ms),
            },
        )
        if await cursor.fetchone() is None:
            await _check_same(conn, facts)
            return False
        # None of these needs another's answer: pipelined, they cost one round trip.
        async with conn.pipeline():
            await _write_lines(conn, sid, tab.lines)
            await _write_shows(conn, sid, facts.shows)
            await _write_earnings(conn, facts)
            await journal.post(conn, entries_for(facts))
        # Outside the pipeline: it reads the reservations (FOR UPDATE) before it writes them.
        await allowances.settle_tab(
            conn,
            customer=tab.ref.customer,
            tab_id=tab.ref.tab_id,
            settlement_id=sid,
            lines=tab.lines,
            settled_at_ms=facts.record.outcome_at_ms,
        )
        # Last in the transaction: the invoice takes its series' counter row, held until the
        # commit, so the lock is held as briefly as it can be.
        invoice = tab_invoice(facts)
        if invoice is not None:
            await invoices.issue_for_settlement(conn, invoice, tab.ref.tab_id)
    return True


def tab_invoice(facts: SettlementFacts) -> invoices.TabInvoice | None:
    """What the invoice of a captured tab documents (None: not captured, or nothing accrued).

    One line per statement line (a model's tips, a show at one rate, a purchase); a voided
    purchase (0) has none. The invoice documents the ``tab_capture`` entry.
    """
    if facts.outcome is not SettlementOutcome.CAPTURED or facts.tab.accrued_minor == 0:
        return None
    return invoices.TabInvoice(
        settlement_id=facts.settlement_id,
        customer=facts.tab.ref.customer,
        currency=facts.tab.currency,
        capture_id=facts.record.capture_id,
        entry_id=f"tab_capture:{facts.settlement_id}",
        issued_at_ms=facts.record.outcome_at_ms,
        lines=_invoice_lines(facts.statement.lines, facts.tab.currency),
    )


async def collected_tab_invoice(
    conn: Connection, ref: TabRef, *, capture_id: str, entry_id: str, collected_at_ms: int
) -> invoices.TabInvoice | None:
    """What the invoice of a tab's debt collected after its capture was declined documents:
    the tab's statement lines, as for a capture, and the ``collection_capture`` entry (None:
    the ledger has no settlement for it, or nothing accrued)."""
    found = await read_tab(conn, ref)
    if found is None or found[0].accrued_minor == 0:
        return None
    tab, _record = found
    statement_lines, _shares = itemize(tab.lines)
    return invoices.TabInvoice(
        settlement_id=settlement_id_of(ref),
        customer=ref.customer,
        currency=tab.currency,
        capture_id=capture_id,
        entry_id=entry_id,
        issued_at_ms=collected_at_ms,
        lines=_invoice_lines(statement_lines, tab.currency),
    )


def _invoice_lines(
    statement_lines: Sequence[StatementLine], currency: str
) -> tuple[invoices.TabLine, ...]:
    return tuple(
        invoices.TabLine(
            key=invoices.line_key(
                item.kind, item.room, item.rate_per_minute_minor, item.purchase_id
            ),
            description=invoices.tab_line_description(
                item.kind,
                item.room,
                currency,
                count=item.count,
                seconds=item.seconds,
                rate_per_minute_minor=item.rate_per_minute_minor,
                item_name=item.item_name,
            ),
            amount_minor=item.amount_minor,
        )
        for item in statement_lines
        if item.amount_minor
    )


async def _check_same(conn: Connection, facts: SettlementFacts) -> None:
    cursor = await conn.execute(
        "SELECT outcome, accrued_minor, captured_minor FROM settlements WHERE settlement_id = %s",
        (facts.settlement_id,),
    )
    row = await cursor.fetchone()
    if row is None:  # pragma: no cover - the conflict above says it exists
        raise LedgerMismatch(f"settlement {facts.settlement_id} vanished")
    expected = (facts.outcome.value, facts.tab.accrued_minor, facts.record.captured_minor)
    if (row["outcome"], row["accrued_minor"], row["captured_minor"]) != expected:
        raise LedgerMismatch(
            f"settlement {facts.settlement_id} was recorded as {row['outcome']} "
            f"{row['accrued_minor']}/{row['captured_minor']}, now {expected}"
        )


async def _write_lines(conn: Connection, sid: str, all_lines: Sequence[Line]) -> None:
    # A voided purchase was never charged: the record holds what the capture is made of.
    lines = charged_lines(all_lines)
    if not lines:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO settlement_lines (settlement_id, line_id, seq, kind, room, at,
                amount_minor, payout_bp, share_minor, seconds, rate_per_minute_minor, message,
                covered_s, saved_minor, session_kind, item_id, item_name, purchase_kind)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    sid,
                    line.line_id,
                    line.seq,
                    line.kind,
                    line.room,
                    at(line.at_ms),
                    line.amount_minor,
                    line.payout_bp,
                    line.share_minor,
                    line.seconds,
                    line.rate_per_minute_minor,
                    line.message,
                    line.covered_s,
                    line.saved_minor,
                    line.session_kind,
                    line.item_id,
                    line.item_name,
                    line.item_kind,
                )
                for line in lines
            ],
        )


async def _write_shows(conn: Connection, sid: str, shows: Sequence[ShowFacts]) -> None:
    if not shows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO settlement_sessions (settlement_id, session_id, room, kind,
                rate_per_minute_minor, minimum_s, started_at, ended_at, billed_s, amount_minor,
                end_reason)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    sid,
                    show.session_id,
                    show.room,
                    show.kind,
                    show.rate_per_minute_minor,
                    show.minimum_s,
                    at(show.started_at_ms),
                    at_or_none(show.ended_at_ms),
                    show.billed_s,
                    show.amount_minor,
                    show.end_reason,
                )
                for show in shows
            ],
        )


async def _write_earnings(conn: Connection, facts: SettlementFacts) -> None:
    gross = gross_by_room(facts.tab.lines)
    if not gross:
        return
    collected = facts.outcome is SettlementOutcome.CAPTURED
    shares = dict(facts.statement.model_shares)
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO model_earnings (settlement_id, room, currency, gross_minor, share_minor,
                collected, outcome_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    facts.settlement_id,
                    room,
                    facts.tab.currency,
                    amount,
                    shares.get(room, 0),
                    collected,
                    at(facts.record.outcome_at_ms),
                )
                for room, amount in sorted(gross.items())
            ],
        )


# -- reading -----------------------------------------------------------------------------------


async def read_tab(conn: Connection, ref: TabRef) -> tuple[Tab, SettlementRecord] | None:
    """The settled tab ``ref`` and its settlement record, as Redis held them; None if the
    ledger has no settlement for it."""
    cursor = await conn.execute(
        "SELECT * FROM settlements WHERE customer = %s AND tab_id = %s",
        (ref.customer, ref.tab_id),
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    cursor = await conn.execute(
        "SELECT * FROM settlement_lines WHERE settlement_id = %s ORDER BY seq",
        (row["settlement_id"],),
    )
    lines = tuple(_line(line) for line in await cursor.fetchall())
    return _tab(row, ref, lines), _record(row)


async def find_capture(conn: Connection, capture_id: str) -> TabRef | None:
    """The tab that capture ``capture_id`` settled, or None."""
    cursor = await conn.execute(
        "SELECT customer, tab_id FROM settlements WHERE capture_id = %s", (capture_id,)
    )
    row = await cursor.fetchone()
    return TabRef(row["customer"], row["tab_id"]) if row is not None else None


@dataclass(frozen=True, slots=True)
class SettlementSummary:
    """One settlement as reconciliation and reports read it."""

    settlement_id: str
    ref: TabRef
    currency: str
    processor: str
    outcome: str
    accrued_minor: int
    captured_minor: int
    capture_id: str
    idempotency_key: str
    outcome_at_ms: int


async def between(conn: Connection, since: datetime, until: datetime) -> list[SettlementSummary]:
    """Every settlement whose outcome falls in ``[since, until)``, oldest first."""
    cursor = await conn.execute(
        """
        SELECT settlement_id, customer, tab_id, currency, processor, outcome, accrued_minor,
               captured_minor, capture_id, idempotency_key, outcome_at
        FROM settlements WHERE outcome_at >= %s AND outcome_at < %s
        ORDER BY outcome_at, settlement_id
        """,
        (since, until),
    )
    return [
        SettlementSummary(
            settlement_id=row["settlement_id"],
            ref=TabRef(row["customer"], row["tab_id"]),
            currency=row["currency"],
            processor=row["processor"],
            outcome=row["outcome"],
            accrued_minor=row["accrued_minor"],
            captured_minor=row["captured_minor"],
            capture_id=row["capture_id"] or "",
            idempotency_key=row["idempotency_key"],
            outcome_at_ms=ms(row["outcome_at"]),
        )
        for row in await cursor.fetchall()
    ]


async def recorded_ids(conn: Connection, settlement_ids: Sequence[str]) -> dict[str, int]:
    """Of ``settlement_ids``, those the ledger holds, with their accrued amount."""
    if not settlement_ids:
        return {}
    cursor = await conn.execute(
        "SELECT settlement_id, accrued_minor FROM settlements WHERE settlement_id = ANY(%s)",
        (list(settlement_ids),),
    )
    return {row["settlement_id"]: row["accrued_minor"] for row in await cursor.fetchall()}


def _line(row: dict[str, Any]) -> Line:
    return Line(
        kind=row["kind"],
        line_id=row["line_id"],
        seq=row["seq"],
        at_ms=ms(row["at"]),
        room=row["room"],
        amount_minor=row["amount_minor"],
        payout_bp=row["payout_bp"],
        share_minor=row["share_minor"],
        seconds=row["seconds"],
        rate_per_minute_minor=row["rate_per_minute_minor"],
        message=row["message"],
        covered_s=row["covered_s"],
        saved_minor=row["saved_minor"],
        session_kind=row["session_kind"],
        item_id=row["item_id"],
        item_name=row["item_name"],
        item_kind=row["purchase_kind"],
    )


def _tab(row: dict[str, Any], ref: TabRef, lines: tuple[Line, ...]) -> Tab:
    return Tab(
        ref=ref,
        currency=row["currency"],
        state=TabState(row["state"]),
        cap_minor=row["cap_minor"],
        accrued_minor=row["accrued_minor"],
        version=row["tab_version"],
        auth_ref=row["auth_ref"],
        capture_before_ms=ms(row["capture_before"]),
        opened_at_ms=ms(row["opened_at"]),
        active_at_ms=ms(row["active_at"]),
        freeze_reason=row["freeze_reason"],
        frozen_at_ms=ms(row["frozen_at"]),
        exhausted_at_ms=ms(row["exhausted_at"]),
        burn_minor_per_minute=0,
        processor=row["processor"],
        opened_cap_minor=row["opened_cap_minor"],
        payment_method=row["payment_method"],
        second_holds=tuple(SecondHold(**hold) for hold in row["second_holds"]),
        lines=lines,
    )


def _record(row: dict[str, Any]) -> SettlementRecord:
    return SettlementRecord(
        amount_minor=row["accrued_minor"],
        idempotency_key=row["idempotency_key"],
        started_at_ms=ms(row["started_at"]),
        attempts=row["attempts"],
        outcome=SettlementOutcome(row["outcome"]),
        outcome_at_ms=ms(row["outcome_at"]),
        captured_minor=row["captured_minor"],
        capture_id=row["capture_id"] or "",
        released_minor=row["released_minor"],
        decline_reason=row["decline_reason"],
        retryable=row["retryable"],
        followups_done=True,
    )
