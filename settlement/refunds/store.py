"""The SQL of refunds, disputes and customer flags (migration ``0002_refunds.sql``).

Theory of operation. What may still be taken back from a captured tab lives in
``refundable_tabs`` and ``refundable_lines`` (made from the settlement on first use), with a
``CHECK`` that refunded + disputed never exceeds captured, per line and per tab. Every refund
or dispute takes, inside one transaction, the tab's row lock first and then its lines' (in
line-id order, so two transactions never wait on each other crosswise), decides on the
counters it now holds exclusively, and raises them. A concurrent request — from this process
or any other — waits on the tab's lock and then reads the raised counters: the bound is exact
however many race, and the ``CHECK`` refuses anything past it even if the Python were wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from psycopg import sql

from settlement.ledger.db import Connection
from settlement.refunds.attachments import Attachment
from settlement.refunds.policy import LineFacts
from settlement.refunds.split import step_part


class RefundStatus(StrEnum):
    """Where a refund stands (docs/refunds.md draws the transitions)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    AWAITING_CONSENT = "awaiting_consent"
    DECLINED = "declined"


#: The allowed transitions of a refund: from a status, to the statuses it may go to.
TRANSITIONS: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.AWAITING_CONSENT: frozenset({RefundStatus.PENDING, RefundStatus.DECLINED}),
    RefundStatus.PENDING: frozenset({RefundStatus.SUCCEEDED, RefundStatus.FAILED}),
    RefundStatus.SUCCEEDED: frozenset(),
    RefundStatus.FAILED: frozenset(),
    RefundStatus.REFUSED: frozenset(),
    RefundStatus.DECLINED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class Captured:
    """A settled tab as refunds need it."""

    settlement_id: str
    customer: str
    tab_id: str
    currency: str
    processor: str
    outcome: str
    capture_id: str
    captured_minor: int
    outcome_at: datetime


@dataclass(frozen=True, slots=True)
class LineState:
    """One line's counters, locked, with its facts for the policy."""

    facts: LineFacts
    captured_minor: int
    share_minor: int
    taken_minor: int
    model_taken_minor: int


@dataclass(frozen=True, slots=True)
class Part:
    """What a refund or dispute takes from one line, split between model and platform."""

    line_id: str
    room: str
    amount_minor: int
    model_minor: int

    @property
    def platform_minor(self) -> int:
        """The platform's part: the rest."""
        return self.amount_minor - self.model_minor


async def captured(conn: Connection, settlement_id: str) -> Captured | None:
    """The settlement ``settlement_id`` (any outcome), or None."""
    cursor = await conn.execute(
        """
        SELECT settlement_id, customer, tab_id, currency, processor, outcome,
               coalesce(capture_id, '') AS capture_id, captured_minor, outcome_at
        FROM settlements WHERE settlement_id = %s
        """,
        (settlement_id,),
    )
    row = await cursor.fetchone()
    return Captured(**row) if row is not None else None


async def lock_lines(conn: Connection, settlement_id: str) -> list[LineState]:
    """Make the tab's refundable rows on first use, lock the tab's row, then its lines (in
    line-id order), and return the lines' counters. Inside the caller's transaction."""
    await conn.execute(
        """
        INSERT INTO refundable_tabs (settlement_id, captured_minor)
        SELECT settlement_id, captured_minor FROM settlements
        WHERE settlement_id = %s AND outcome = 'captured' AND captured_minor > 0
        ON CONFLICT (settlement_id) DO NOTHING
        """,
        (settlement_id,),
    )
    await conn.execute(
        """
        INSERT INTO refundable_lines (settlement_id, line_id, room, captured_minor, share_minor)
        SELECT settlement_id, line_id, room, amount_minor, share_minor FROM settlement_lines
        -- A line a member's allowance paid whole (docs/subscriptions.md) captured nothing:
        -- there is nothing of it to refund.
        WHERE settlement_id = %s AND amount_minor > 0 AND EXISTS (
            SELECT 1 FROM refundable_tabs t WHERE t.settlement_id = %s)
        ON CONFLICT (settlement_id, line_id) DO NOTHING
        """,
        (settlement_id, settlement_id),
    )
    await conn.execute(
        "SELECT 1 FROM refundable_tabs WHERE settlement_id = %s FOR UPDATE", (settlement_id,)
    )
    cursor = await conn.execute(
        """
        SELECT r.line_id, r.room, r.captured_minor, r.share_minor, r.refunded_minor,
               r.disputed_minor, r.model_taken_minor, l.seq, l.kind, l.seconds,
               coalesce(s.kind, '') AS show_kind
        FROM refundable_lines r
        JOIN settlement_lines l USING (settlement_id, line_id)
        LEFT JOIN settlement_sessions s
            ON s.settlement_id = r.settlement_id AND 'sess:' || s.session_id = r.line_id
        WHERE r.settlement_id = %s
        ORDER BY r.line_id
        FOR UPDATE OF r
        """,
        (settlement_id,),
    )
    states = []
    for row in await cursor.fetchall():
        taken = row["refunded_minor"] + row["disputed_minor"]
        states.append(
            LineState(
                facts=LineFacts(
                    line_id=row["line_id"],
                    seq=row["seq"],
                    kind=row["kind"],
                    room=row["room"],
                    amount_minor=row["captured_minor"],
                    remaining_minor=row["captured_minor"] - taken,
                    show_kind=row["show_kind"],
                    seconds=row["seconds"],
                ),
                captured_minor=row["captured_minor"],
                share_minor=row["share_minor"],
                taken_minor=taken,
                model_taken_minor=row["model_taken_minor"],
            )
        )
    return states


Counter = Literal["refunded_minor", "disputed_minor"]


async def take(
    conn: Connection,
    settlement_id: str,
    states: Sequence[LineState],
    amounts: Mapping[str, int],
    counter: Counter,
) -> list[Part]:
    """Raise ``counter`` of the locked lines by ``amounts`` (line id → amount) and the tab's by
    their sum; return each line's part, split by :func:`~settlement.refunds.split.step_part`.
    The database's ``CHECK`` refuses any line or tab taken past its capture."""
    by_id = {state.facts.line_id: state for state in states}
    parts = []
    for line_id, amount in sorted(amounts.items()):
        state = by_id[line_id]
        model = step_part(
            amount,
            taken_before_minor=state.taken_minor,
            model_taken_before_minor=state.model_taken_minor,
            captured_minor=state.captured_minor,
            share_minor=state.share_minor,
        )
        parts.append(Part(line_id, state.facts.room, amount, model))
    await _move(conn, settlement_id, parts, counter, sign=1)
    return parts


async def give_back(
    conn: Connection, settlement_id: str, parts: Sequence[Part], counter: Counter
) -> None:
    """Undo :func:`take` of ``parts`` (a failed refund, a dispute won): lower the counters and
    the model's part taken by exactly what was recorded. Takes the locks in the same order."""
    await conn.execute(
        "SELECT 1 FROM refundable_tabs WHERE settlement_id = %s FOR UPDATE", (settlement_id,)
    )
    await _move(conn, settlement_id, parts, counter, sign=-1)


async def _move(
    conn: Connection, settlement_id: str, parts: Sequence[Part], counter: Counter, *, sign: int
) -> None:
    # ``counter`` is one of two literal column names, quoted as an identifier all the same.
    column = sql.Identifier(counter)
    async with conn.cursor() as cur:
        await cur.executemany(
            sql.SQL(
                """
                UPDATE refundable_lines
                SET {column} = {column} + %s, model_taken_minor = model_taken_minor + %s
                WHERE settlement_id = %s AND line_id = %s
                """
            ).format(column=column),
            [
                (sign * p.amount_minor, sign * p.model_minor, settlement_id, p.line_id)
                for p in parts
            ],
        )
    await conn.execute(
        sql.SQL(
            "UPDATE refundable_tabs SET {column} = {column} + %s WHERE settlement_id = %s"
        ).format(column=column),
        (sign * sum(p.amount_minor for p in parts), settlement_id),
    )


# -- refunds -----------------------------------------------------------------------------------


async def lock_id(conn: Connection, kind: str, ident: str) -> None:
    """Serialize every transaction about one refund or dispute id (transaction-wide)."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 14))", (f"{kind}:{ident}",)
    )


async def refund_row(conn: Connection, refund_id: str) -> dict[str, Any] | None:
    """The refund ``refund_id`` with its lines, or None."""
    cursor = await conn.execute("SELECT * FROM refunds WHERE refund_id = %s", (refund_id,))
    row = await cursor.fetchone()
    if row is None:
        return None
    cursor = await conn.execute(
        "SELECT * FROM refund_lines WHERE refund_id = %s ORDER BY line_id", (refund_id,)
    )
    lines = await cursor.fetchall()
    cursor = await conn.execute(
        "SELECT * FROM refund_consents WHERE refund_id = %s ORDER BY room", (refund_id,)
    )
    asked = await cursor.fetchall()
    captures = await refund_captures(conn, refund_id)
    return {**row, "lines": lines, "captures": captures, "consents": asked}


def parts_of(rows: Sequence[Mapping[str, Any]]) -> list[Part]:
    """The parts recorded in ``refund_lines`` or ``dispute_lines`` rows."""
    return [Part(r["line_id"], r["room"], r["amount_minor"], r["model_minor"]) for r in rows]


async def insert_lines(
    conn: Connection,
    table: Literal["refund_lines", "dispute_lines"],
    ident: str,
    parts: Sequence[Part],
) -> None:
    """Record the parts of a refund (``refund_lines``) or a dispute (``dispute_lines``)."""
    if not parts:
        return
    key = "refund_id" if table == "refund_lines" else "dispute_id"
    async with conn.cursor() as cur:
        await cur.executemany(
            sql.SQL(
                """
                INSERT INTO {table} ({key}, line_id, room, amount_minor, model_minor,
                    platform_minor)
                VALUES (%s, %s, %s, %s, %s, %s)
                """
            ).format(table=sql.Identifier(table), key=sql.Identifier(key)),
            [
                (ident, p.line_id, p.room, p.amount_minor, p.model_minor, p.platform_minor)
                for p in parts
            ],
        )


async def set_refund_status(
    conn: Connection,
    refund_id: str,
    to: RefundStatus,
    *,
    now: datetime,
    **fields: Any,
) -> bool:
    """Move a refund to ``to`` if :data:`TRANSITIONS` allows it from where it stands; False
    if it stood elsewhere (another request moved it first). ``fields`` are set alongside."""
    sources = [str(s) for s, targets in TRANSITIONS.items() if to in targets]
    assignments: list[sql.Composable] = [
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name))
        for name in sorted(fields)
    ]
    if not TRANSITIONS[to]:
        assignments.append(sql.SQL("finished_at = %(now)s"))
    query = sql.SQL(
        """
        UPDATE refunds SET {assignments}
        WHERE refund_id = %(id)s AND status = ANY(%(sources)s)
        RETURNING refund_id
        """
    ).format(assignments=sql.SQL(", ").join([sql.SQL("status = %(to)s"), *assignments]))
    cursor = await conn.execute(
        query, {"to": str(to), "id": refund_id, "sources": sources, "now": now, **fields}
    )
    return await cursor.fetchone() is not None


#: The PostgreSQL channel a room's name is sent on when its list of refunds waiting for the
#: model's consent changed (asked, answered, expired); every server process listens.
CONSENT_CHANNEL = "tipmeter_refund_consent"


async def ask_consent(conn: Connection, refund_id: str, rooms: Sequence[str]) -> None:
    """Record the rooms whose models must consent to a refund."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO refund_consents (refund_id, room) VALUES (%s, %s)",
            [(refund_id, room) for room in rooms],
        )


async def consents(conn: Connection, refund_id: str) -> dict[str, str | None]:
    """Each room a refund asked, and its answer (None: none yet)."""
    cursor = await conn.execute(
        "SELECT room, answer FROM refund_consents WHERE refund_id = %s ORDER BY room",
        (refund_id,),
    )
    return {row["room"]: row["answer"] for row in await cursor.fetchall()}


async def record_consent(
    conn: Connection,
    refund_id: str,
    rooms: Sequence[str],
    *,
    accept: bool,
    by: str,
    now: datetime,
) -> None:
    """Record the rooms' answer (only where none was recorded yet)."""
    await conn.execute(
        """
        UPDATE refund_consents SET answer = %s, answered_by = %s, answered_at = %s
        WHERE refund_id = %s AND room = ANY(%s) AND answer IS NULL
        """,
        ("accepted" if accept else "declined", by, now, refund_id, list(rooms)),
    )


async def notify_rooms(conn: Connection, rooms: Iterable[str]) -> None:
    """Tell every server process (on commit) that these rooms' waiting lists changed."""
    for room in sorted(set(rooms)):
        await conn.execute("SELECT pg_notify(%s, %s)", (CONSENT_CHANNEL, room))


async def waiting_for(conn: Connection, room: str, limit: int) -> list[dict[str, Any]]:
    """The refunds waiting for ``room``'s answer (not escalated), oldest first, with the ids
    of the lines of that room (``room_lines``)."""
    cursor = await conn.execute(
        """
        SELECT r.refund_id, r.currency, r.amount_minor, r.reason, r.note, r.origin,
               r.requested_at, r.decision,
               ARRAY(SELECT line_id FROM settlement_lines l
                     WHERE l.settlement_id = r.settlement_id AND l.room = c.room) AS room_lines
        FROM refund_consents c JOIN refunds r USING (refund_id)
        WHERE c.room = %s AND c.answer IS NULL AND r.status = 'awaiting_consent'
          AND r.escalated_at IS NULL
        ORDER BY r.requested_at, r.refund_id
        LIMIT %s
        """,
        (room, limit),
    )
    return list(await cursor.fetchall())


async def overdue_consents(conn: Connection, cutoff: datetime, limit: int) -> list[str]:
    """Refunds waiting for consent (not escalated) since before ``cutoff``, oldest first."""
    cursor = await conn.execute(
        """
        SELECT refund_id FROM refunds
        WHERE status = 'awaiting_consent' AND escalated_at IS NULL AND requested_at < %s
        ORDER BY requested_at LIMIT %s
        """,
        (cutoff, limit),
    )
    return [row["refund_id"] for row in await cursor.fetchall()]


async def refunded_per_capture(conn: Connection, settlement_id: str) -> dict[str, int]:
    """What the refunds of a tab not failed take from each of its holds' captures (auth ref →
    amount). Read under the tab's row lock."""
    cursor = await conn.execute(
        """
        SELECT c.auth_ref, sum(c.amount_minor) AS taken
        FROM refund_captures c JOIN refunds r USING (refund_id)
        WHERE r.settlement_id = %s AND r.status <> 'failed'
        GROUP BY c.auth_ref
        """,
        (settlement_id,),
    )
    return {row["auth_ref"]: int(row["taken"]) for row in await cursor.fetchall()}


async def insert_captures(
    conn: Connection, refund_id: str, parts: Sequence[tuple[str, int, int, str]]
) -> None:
    """Record what a refund takes from each capture: ``(auth_ref, number, amount, capture id
    or "" until the processor is asked)``."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO refund_captures (refund_id, auth_ref, capture_no, amount_minor,
                capture_id)
            VALUES (%s, %s, %s, %s, %s)
            """,
            [(refund_id, *part) for part in parts],
        )


async def refund_captures(conn: Connection, refund_id: str) -> list[dict[str, Any]]:
    """The captures a refund gives back from, in capture order (empty: the tab's one)."""
    cursor = await conn.execute(
        "SELECT * FROM refund_captures WHERE refund_id = %s ORDER BY capture_no", (refund_id,)
    )
    return list(await cursor.fetchall())


async def record_capture_refund(
    conn: Connection, refund_id: str, auth_ref: str, capture_id: str, processor_refund_id: str
) -> None:
    """A capture gave its part of a refund back: its id and the processor's refund id."""
    await conn.execute(
        """
        UPDATE refund_captures SET capture_id = %s, processor_refund_id = %s
        WHERE refund_id = %s AND auth_ref = %s
        """,
        (capture_id, processor_refund_id, refund_id, auth_ref),
    )


async def insert_attachments(
    conn: Connection, refund_id: str, attachments: Sequence[Attachment]
) -> None:
    """Record a request's checked attachments (numbered from 1)."""
    if not attachments:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO refund_attachments (refund_id, n, content_type, size_bytes, sha256,
                filename, content)
            VALUES (%s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (refund_id, n, a.content_type, len(a.content), a.sha256, a.filename, a.content)
                for n, a in enumerate(attachments, start=1)
            ],
        )


async def attachment(conn: Connection, refund_id: str, n: int) -> dict[str, Any] | None:
    """One attachment with its bytes, or None."""
    cursor = await conn.execute(
        "SELECT * FROM refund_attachments WHERE refund_id = %s AND n = %s", (refund_id, n)
    )
    return await cursor.fetchone()


async def refundable(conn: Connection, settlement_id: str) -> list[dict[str, Any]]:
    """A settled tab's lines with what may still be taken back of each (refunds reserved or
    made, and disputes, count against it)."""
    cursor = await conn.execute(
        """
        SELECT l.line_id, l.kind, l.room, l.amount_minor, l.seconds, l.at,
               l.amount_minor - coalesce(r.refunded_minor + r.disputed_minor, 0)
                   AS refundable_minor
        FROM settlement_lines l
        LEFT JOIN refundable_lines r USING (settlement_id, line_id)
        WHERE l.settlement_id = %s
        ORDER BY l.seq
        """,
        (settlement_id,),
    )
    return list(await cursor.fetchall())


async def refunds_of(conn: Connection, settlement_id: str) -> list[dict[str, Any]]:
    """Every refund of a tab, oldest first, with the names and sizes of its attachments."""
    cursor = await conn.execute(
        """
        SELECT r.*, coalesce((
            SELECT json_agg(json_build_object('n', a.n, 'content_type', a.content_type,
                'size_bytes', a.size_bytes, 'filename', a.filename) ORDER BY a.n)
            FROM refund_attachments a WHERE a.refund_id = r.refund_id), '[]') AS attachments
        FROM refunds r WHERE r.settlement_id = %s
        ORDER BY r.requested_at, r.refund_id
        """,
        (settlement_id,),
    )
    return list(await cursor.fetchall())


# -- disputes and flags ------------------------------------------------------------------------


async def dispute_row(conn: Connection, dispute_id: str) -> dict[str, Any] | None:
    """The dispute ``dispute_id`` with its lines, or None."""
    cursor = await conn.execute("SELECT * FROM disputes WHERE dispute_id = %s", (dispute_id,))
    row = await cursor.fetchone()
    if row is None:
        return None
    cursor = await conn.execute(
        "SELECT * FROM dispute_lines WHERE dispute_id = %s ORDER BY line_id", (dispute_id,)
    )
    return {**row, "lines": await cursor.fetchall()}


async def flag_customer(
    conn: Connection, customer: str, reason: str, dispute_id: str, now: datetime
) -> None:
    """Flag ``customer`` (again, if a flag was cleared before)."""
    await conn.execute(
        """
        INSERT INTO customer_flags (customer, reason, dispute_id, flagged_at)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (customer) DO UPDATE SET reason = EXCLUDED.reason,
            dispute_id = EXCLUDED.dispute_id, flagged_at = EXCLUDED.flagged_at,
            cleared_at = NULL, cleared_by = ''
        """,
        (customer, reason, dispute_id, now),
    )


async def flag_of(conn: Connection, customer: str) -> dict[str, Any] | None:
    """The customer's standing flag (not cleared), or None."""
    cursor = await conn.execute(
        "SELECT * FROM customer_flags WHERE customer = %s AND cleared_at IS NULL", (customer,)
    )
    return await cursor.fetchone()


async def clear_flag(conn: Connection, customer: str, by: str, now: datetime) -> bool:
    """Clear the customer's flag; False if there was none standing."""
    cursor = await conn.execute(
        """
        UPDATE customer_flags SET cleared_at = %s, cleared_by = %s
        WHERE customer = %s AND cleared_at IS NULL RETURNING customer
        """,
        (now, by, customer),
    )
    return await cursor.fetchone() is not None


async def dispute_ratios(
    conn: Connection, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """Per processor: disputes opened in ``[since, until)`` and captured settlements then."""
    cursor = await conn.execute(
        """
        WITH settled AS (
            SELECT processor, count(*) AS n FROM settlements
            WHERE outcome = 'captured' AND outcome_at >= %(since)s AND outcome_at < %(until)s
            GROUP BY processor),
        disputed AS (
            SELECT processor, count(*) AS n FROM disputes
            WHERE opened_at >= %(since)s AND opened_at < %(until)s GROUP BY processor)
        SELECT coalesce(s.processor, d.processor) AS processor,
               coalesce(s.n, 0) AS settled, coalesce(d.n, 0) AS disputes
        FROM settled s FULL JOIN disputed d ON d.processor = s.processor
        ORDER BY 1
        """,
        {"since": since, "until": until},
    )
    return list(await cursor.fetchall())


# -- a payment by any number -------------------------------------------------------------------


async def find_payment(conn: Connection, number: str) -> list[tuple[str, str]]:
    """The settlements (id, kind of number) ``number`` names: a capture id, the processor's
    transaction id, an authorization, a refund id (ours or the processor's), a dispute id, a
    tab id or a tip id. Every match, most specific first."""
    cursor = await conn.execute(
        """
        SELECT settlement_id, 'capture_id' AS kind, 1 AS rank
            FROM settlements WHERE capture_id = %(n)s
        UNION SELECT settlement_id, 'processor_ref', 2
            FROM settlements WHERE processor_ref = %(n)s AND processor_ref <> ''
        UNION SELECT settlement_id, 'auth_ref', 3 FROM settlements WHERE auth_ref = %(n)s
        UNION SELECT s.settlement_id, 'auth_ref', 3 FROM holds h
            JOIN settlements s ON s.customer = h.customer AND s.tab_id = h.tab_id
            WHERE h.auth_ref = %(n)s OR (h.processor_ref = %(n)s AND h.processor_ref <> '')
        UNION SELECT settlement_id, 'refund_id', 4 FROM refunds
            WHERE refund_id = %(n)s OR processor_refund_id = %(n)s
        UNION SELECT settlement_id, 'dispute_id', 5 FROM disputes WHERE dispute_id = %(n)s
        UNION SELECT settlement_id, 'tab_id', 6 FROM settlements WHERE tab_id = %(n)s
        UNION SELECT settlement_id, 'tip_id', 7 FROM settlement_lines
            WHERE line_id = 'tip:' || %(n)s
        ORDER BY 3, 1
        """,
        {"n": number},
    )
    seen: dict[str, str] = {}
    for row in await cursor.fetchall():
        seen.setdefault(row["settlement_id"], row["kind"])
    return list(seen.items())


async def history(conn: Connection, settlement_id: str) -> dict[str, Any]:
    """Everything the ledger holds about one settlement beyond its tab: holds, shows,
    refunds with their lines, disputes with theirs, journal entries, webhook deliveries."""
    found = await captured(conn, settlement_id)
    if found is None:
        return {}
    queries = {
        "holds": (
            "SELECT * FROM holds WHERE customer = %s AND tab_id = %s ORDER BY recorded_at",
            (found.customer, found.tab_id),
        ),
        "shows": (
            "SELECT * FROM settlement_sessions WHERE settlement_id = %s ORDER BY started_at",
            (settlement_id,),
        ),
        "refunds": (
            "SELECT * FROM refunds WHERE settlement_id = %s ORDER BY requested_at, refund_id",
            (settlement_id,),
        ),
        "disputes": (
            "SELECT * FROM disputes WHERE settlement_id = %s ORDER BY opened_at, dispute_id",
            (settlement_id,),
        ),
        "entries": (
            """
            SELECT e.entry_id, c.name AS code, e.posted_at,
                   json_agg(json_build_object('account', a.code, 'amount_minor', p.amount_minor)
                            ORDER BY p.posting_no) AS postings
            FROM journal_entries e JOIN entry_codes c USING (code)
            JOIN postings p USING (entry_id) JOIN accounts a USING (account_id)
            WHERE e.settlement_id = %s
            GROUP BY e.entry_id, c.name, e.posted_at ORDER BY e.posted_at, e.entry_id
            """,
            (settlement_id,),
        ),
        "webhooks": (
            "SELECT * FROM webhook_deliveries WHERE subject_id = %s ORDER BY delivered_at",
            (settlement_id,),
        ),
    }
    result: dict[str, Any] = {}
    for name, (query, params) in queries.items():
        cursor = await conn.execute(query.encode(), params)
        result[name] = await cursor.fetchall()
    for refund in result["refunds"]:
        cursor = await conn.execute(
            "SELECT * FROM refund_lines WHERE refund_id = %s ORDER BY line_id",
            (refund["refund_id"],),
        )
        refund["lines"] = await cursor.fetchall()
    for dispute in result["disputes"]:
        cursor = await conn.execute(
            "SELECT * FROM dispute_lines WHERE dispute_id = %s ORDER BY line_id",
            (dispute["dispute_id"],),
        )
        dispute["lines"] = await cursor.fetchall()
    return result
