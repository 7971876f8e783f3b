"""The subscriptions aggregate in the ledger: plans, subscriptions, periods, attempts, changes,
history and invoices (migration ``0004_subscriptions.sql``).

Every function runs in the caller's connection (and transaction, where the caller opened one).
A subscription is read whole into :class:`Subscription`, changed as a value
(:func:`dataclasses.replace`), and written back whole by :func:`save` with the row read
``FOR UPDATE`` in the same transaction; a state change goes through :func:`transition`, which
asks :func:`settlement.subscriptions.lifecycle.apply` first and records the history row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from settlement.ledger.db import Connection
from settlement.ledger.times import at, at_or_none, ms
from settlement.subscriptions.errors import SubscriptionError
from settlement.subscriptions.lifecycle import SubEvent, SubState, apply
from settlement.subscriptions.plans import Plan, plan_from_json

#: The PostgreSQL channel a trigger on ``subscriptions`` sends ``<customer> <subscription_id>``
#: on, in the transaction of every change a member sees (migration 0011); every server process
#: listens (:mod:`server.subscription_push`).
SUBSCRIPTIONS_CHANNEL = "tipmeter_subscriptions"


class TransitionRefused(SubscriptionError):
    """A transition the lifecycle table does not allow (a bug in the caller: the service and
    the scheduler check the state under the row's lock before they ask)."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription as the ledger keeps it (times in ms since the epoch; 0: none)."""

    subscription_id: str
    customer: str
    plan_id: str
    currency: str
    processor: str
    payment_method: str
    card_expires: str
    card_notice_for: int
    country: str
    country_evidence: str
    email: str
    language: str
    state: SubState
    started_at_ms: int
    anchor_ms: int
    period_no: int
    period_start_ms: int
    period_end_ms: int
    paid_periods: int
    adjustment_minor: int
    cancel_at_ms: int
    cancel_mode: str
    past_due_since_ms: int
    next_action_at_ms: int
    lease_until_ms: int
    ended_at_ms: int
    updated_at_ms: int
    #: A pause asked for: it takes effect at this time (the paid period's end); 0: none.
    pause_at_ms: int = 0
    #: When the pause took effect (0 unless ``paused``).
    paused_at_ms: int = 0
    #: Periods from ``schedule_from_period`` on are counted from ``schedule_from_ms`` (the day
    #: of the last resume) instead of from ``anchor_ms``; 0: never resumed.
    schedule_from_ms: int = 0
    schedule_from_period: int = 1
    #: What a tiered plan counts (seats, members), and the add-ons: ``(addon_id, quantity)``.
    quantity: int = 1
    addons: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Period:
    """One billing period begun: its bill and how it stands."""

    subscription_id: str
    period_no: int
    plan_id: str
    starts_at_ms: int
    ends_at_ms: int
    currency: str
    net_minor: int
    tax_minor: int
    total_minor: int
    tax_rate_bp: int
    adjustment_minor: int
    lines: list[dict[str, Any]]
    status: str
    attempts_n: int
    first_declined_at_ms: int
    capture_id: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """One charge of a period's amount on the card on file."""

    subscription_id: str
    period_no: int
    attempt_no: int
    idempotency_key: str
    payment_method: str
    amount_minor: int
    status: str
    decline_reason: str
    advice_code: str
    capture_id: str
    started_at_ms: int
    finished_at_ms: int


_SUB_TIMES = {
    "started_at": "started_at_ms",
    "anchor_at": "anchor_ms",
    "period_start": "period_start_ms",
    "period_end": "period_end_ms",
    "cancel_at": "cancel_at_ms",
    "past_due_since": "past_due_since_ms",
    "next_action_at": "next_action_at_ms",
    "lease_until": "lease_until_ms",
    "ended_at": "ended_at_ms",
    "updated_at": "updated_at_ms",
    "pause_at": "pause_at_ms",
    "paused_at": "paused_at_ms",
    "schedule_from": "schedule_from_ms",
}
_SUB_PLAIN = (
    "subscription_id",
    "customer",
    "plan_id",
    "currency",
    "processor",
    "payment_method",
    "card_expires",
    "card_notice_for",
    "country",
    "country_evidence",
    "email",
    "language",
    "period_no",
    "paid_periods",
    "adjustment_minor",
    "cancel_mode",
    "schedule_from_period",
    "quantity",
)


def _subscription(row: dict[str, Any]) -> Subscription:
    fields: dict[str, Any] = {name: row[name] for name in _SUB_PLAIN}
    fields["currency"] = row["currency"].strip()
    fields["country"] = row["country"].strip()
    fields["state"] = SubState(row["state"])
    for column, name in _SUB_TIMES.items():
        fields[name] = ms(row[column])
    fields["addons"] = tuple((a["addon_id"], a["quantity"]) for a in row["addons"])
    return Subscription(**fields)


def _values(sub: Subscription) -> dict[str, Any]:
    values: dict[str, Any] = {name: getattr(sub, name) for name in _SUB_PLAIN}
    values["state"] = sub.state.value
    values["addons"] = Jsonb([{"addon_id": a, "quantity": q} for a, q in sub.addons])
    for column, name in _SUB_TIMES.items():
        value = getattr(sub, name)
        values[column] = at(value) if column in _REQUIRED_TIMES else at_or_none(value)
    return values


_REQUIRED_TIMES = frozenset({"started_at", "anchor_at", "period_start", "period_end", "updated_at"})


# -- plans ----------------------------------------------------------------------------------


async def put_plan(conn: Connection, plan: Plan, now_ms: int) -> bool:
    """Record ``plan`` once (False: a plan of that id exists; it is left as it is)."""
    cursor = await conn.execute(
        """
        INSERT INTO subscription_plans (plan_id, kind, room, model_share_bp, rank, definition,
                                        created_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (plan_id) DO NOTHING
        """,
        (
            plan.plan_id,
            plan.kind.value,
            plan.room,
            plan.model_share_bp,
            plan.rank,
            orjson.dumps(plan.to_json()).decode(),
            at(now_ms),
        ),
    )
    return cursor.rowcount == 1


async def read_plan(conn: Connection, plan_id: str) -> Plan | None:
    """The plan ``plan_id``, or None."""
    cursor = await conn.execute(
        "SELECT definition FROM subscription_plans WHERE plan_id = %s", (plan_id,)
    )
    row = await cursor.fetchone()
    return plan_from_json(row["definition"]) if row is not None else None


async def list_plans(conn: Connection) -> list[Plan]:
    """Every plan, by id."""
    cursor = await conn.execute("SELECT definition FROM subscription_plans ORDER BY plan_id")
    return [plan_from_json(row["definition"]) for row in await cursor.fetchall()]


# -- subscriptions --------------------------------------------------------------------------


async def insert(conn: Connection, sub: Subscription) -> bool:
    """Create ``sub`` (False: one of that id exists already)."""
    values = _values(sub)
    columns = ", ".join(values)
    marks = ", ".join(f"%({name})s" for name in values)
    cursor = await conn.execute(
        f"INSERT INTO subscriptions ({columns}) VALUES ({marks})"  # noqa: S608 - fixed names
        " ON CONFLICT (subscription_id) DO NOTHING",
        values,
    )
    return cursor.rowcount == 1


async def read(
    conn: Connection, subscription_id: str, *, lock: bool = False
) -> Subscription | None:
    """The subscription, or None (``lock``: read ``FOR UPDATE``)."""
    cursor = await conn.execute(
        "SELECT * FROM subscriptions WHERE subscription_id = %s FOR UPDATE"
        if lock
        else "SELECT * FROM subscriptions WHERE subscription_id = %s",
        (subscription_id,),
    )
    row = await cursor.fetchone()
    return _subscription(row) if row is not None else None


async def of_customer(conn: Connection, customer: str, limit: int) -> list[Subscription]:
    """A customer's subscriptions, newest first, at most ``limit``."""
    cursor = await conn.execute(
        "SELECT * FROM subscriptions WHERE customer = %s ORDER BY started_at DESC LIMIT %s",
        (customer, limit),
    )
    return [_subscription(row) for row in await cursor.fetchall()]


async def save(conn: Connection, sub: Subscription) -> None:
    """Write every mutable field of ``sub`` (read under ``FOR UPDATE`` in this transaction)."""
    values = _values(sub)
    fixed = {"subscription_id", "customer", "started_at", "currency"}
    assignments = ", ".join(f"{name} = %({name})s" for name in values if name not in fixed)
    await conn.execute(
        f"UPDATE subscriptions SET {assignments}"  # noqa: S608 - fixed names
        " WHERE subscription_id = %(subscription_id)s",
        values,
    )


async def claim_due(
    conn: Connection, now_ms: int, limit: int, *, subscription_id: str = ""
) -> list[Subscription]:
    """Lock up to ``limit`` subscriptions whose next action is due and whose claim (if any)
    has lapsed, oldest first (only ``subscription_id`` when given); rows another worker holds
    are skipped, not waited for."""
    cursor = await conn.execute(
        """
        SELECT * FROM subscriptions
        WHERE next_action_at <= %(now)s AND (lease_until IS NULL OR lease_until <= %(now)s)
          AND (%(sid)s = '' OR subscription_id = %(sid)s)
        ORDER BY next_action_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
        """,
        {"now": at(now_ms), "limit": limit, "sid": subscription_id},
    )
    return [_subscription(row) for row in await cursor.fetchall()]


async def transition(
    conn: Connection, sub: Subscription, event: SubEvent, now_ms: int, detail: str = ""
) -> Subscription:
    """``sub`` after ``event`` (its history row written; the caller saves the row). Raises
    :class:`TransitionRefused` if the table forbids it."""
    target = apply(sub.state, event)
    if target is None:
        raise TransitionRefused(
            f"subscription {sub.subscription_id}: {event} not allowed in {sub.state}"
        )
    await conn.execute(
        """
        INSERT INTO subscription_events (subscription_id, seq, event, from_state, to_state,
                                         detail, at)
        SELECT %s, coalesce(max(seq), 0) + 1, %s, %s, %s, %s, %s
        FROM subscription_events WHERE subscription_id = %s
        """,
        (
            sub.subscription_id,
            event.value,
            sub.state.value,
            target.value,
            detail,
            at(now_ms),
            sub.subscription_id,
        ),
    )
    return dataclasses.replace(sub, state=target, updated_at_ms=now_ms)


async def history(conn: Connection, subscription_id: str) -> list[dict[str, Any]]:
    """Every transition of a subscription, in order."""
    cursor = await conn.execute(
        """
        SELECT seq, event, from_state, to_state, detail, at FROM subscription_events
        WHERE subscription_id = %s ORDER BY seq
        """,
        (subscription_id,),
    )
    return [
        {
            "seq": row["seq"],
            "event": row["event"],
            "from": row["from_state"],
            "to": row["to_state"],
            "detail": row["detail"],
            "at_ms": ms(row["at"]),
        }
        for row in await cursor.fetchall()
    ]


# -- periods and attempts -------------------------------------------------------------------


def _period(row: dict[str, Any]) -> Period:
    return Period(
        subscription_id=row["subscription_id"],
        period_no=row["period_no"],
        plan_id=row["plan_id"],
        starts_at_ms=ms(row["starts_at"]),
        ends_at_ms=ms(row["ends_at"]),
        currency=row["currency"].strip(),
        net_minor=row["net_minor"],
        tax_minor=row["tax_minor"],
        total_minor=row["total_minor"],
        tax_rate_bp=row["tax_rate_bp"],
        adjustment_minor=row["adjustment_minor"],
        lines=list(row["lines"]),
        status=row["status"],
        attempts_n=row["attempts_n"],
        first_declined_at_ms=ms(row["first_declined_at"]),
        capture_id=row["capture_id"] or "",
    )


async def insert_period(conn: Connection, period: Period, now_ms: int) -> bool:
    """Begin ``period`` (False: it was begun before — the row is left as it is)."""
    cursor = await conn.execute(
        """
        INSERT INTO subscription_periods (subscription_id, period_no, plan_id, starts_at, ends_at,
            currency, net_minor, tax_minor, total_minor, tax_rate_bp, adjustment_minor, lines,
            status, created_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        ON CONFLICT (subscription_id, period_no) DO NOTHING
        """,
        (
            period.subscription_id,
            period.period_no,
            period.plan_id,
            at(period.starts_at_ms),
            at(period.ends_at_ms),
            period.currency,
            period.net_minor,
            period.tax_minor,
            period.total_minor,
            period.tax_rate_bp,
            period.adjustment_minor,
            orjson.dumps(period.lines).decode(),
            period.status,
            at(now_ms),
        ),
    )
    return cursor.rowcount == 1


async def read_period(conn: Connection, subscription_id: str, period_no: int) -> Period | None:
    """One period, or None."""
    cursor = await conn.execute(
        "SELECT * FROM subscription_periods WHERE subscription_id = %s AND period_no = %s",
        (subscription_id, period_no),
    )
    row = await cursor.fetchone()
    return _period(row) if row is not None else None


async def periods(conn: Connection, subscription_id: str) -> list[Period]:
    """Every period of a subscription, in order."""
    cursor = await conn.execute(
        "SELECT * FROM subscription_periods WHERE subscription_id = %s ORDER BY period_no",
        (subscription_id,),
    )
    return [_period(row) for row in await cursor.fetchall()]


async def settle_period(
    conn: Connection,
    subscription_id: str,
    period_no: int,
    status: str,
    now_ms: int,
    *,
    capture_id: str = "",
    declined: bool = False,
) -> None:
    """Set a period's status (``paid`` with its capture, ``unpaid``, ``void``, ``due``);
    ``declined`` records the first decline's time."""
    await conn.execute(
        """
        UPDATE subscription_periods SET status = %s, capture_id = coalesce(%s, capture_id),
            settled_at = CASE WHEN %s IN ('paid', 'void') THEN %s ELSE settled_at END,
            first_declined_at = CASE WHEN %s THEN coalesce(first_declined_at, %s)
                                     ELSE first_declined_at END
        WHERE subscription_id = %s AND period_no = %s
        """,
        (
            status,
            capture_id or None,
            status,
            at(now_ms),
            declined,
            at(now_ms),
            subscription_id,
            period_no,
        ),
    )


def _attempt(row: dict[str, Any]) -> Attempt:
    return Attempt(
        subscription_id=row["subscription_id"],
        period_no=row["period_no"],
        attempt_no=row["attempt_no"],
        idempotency_key=row["idempotency_key"],
        payment_method=row["payment_method"],
        amount_minor=row["amount_minor"],
        status=row["status"],
        decline_reason=row["decline_reason"],
        advice_code=row["advice_code"],
        capture_id=row["capture_id"] or "",
        started_at_ms=ms(row["started_at"]),
        finished_at_ms=ms(row["finished_at"]),
    )


async def attempts(conn: Connection, subscription_id: str, period_no: int) -> list[Attempt]:
    """A period's attempts, in order."""
    cursor = await conn.execute(
        """
        SELECT * FROM subscription_attempts WHERE subscription_id = %s AND period_no = %s
        ORDER BY attempt_no
        """,
        (subscription_id, period_no),
    )
    return [_attempt(row) for row in await cursor.fetchall()]


async def reserve_attempt(
    conn: Connection,
    subscription_id: str,
    period_no: int,
    attempt_no: int,
    idempotency_key: str,
    payment_method: str,
    amount_minor: int,
    now_ms: int,
) -> Attempt:
    """Reserve a new ``pending`` attempt (:func:`insert_attempt`) and return it: the one shape a
    renewal's charge and a pay link's charge start from."""
    attempt = Attempt(
        subscription_id=subscription_id,
        period_no=period_no,
        attempt_no=attempt_no,
        idempotency_key=idempotency_key,
        payment_method=payment_method,
        amount_minor=amount_minor,
        status="pending",
        decline_reason="",
        advice_code="",
        capture_id="",
        started_at_ms=now_ms,
        finished_at_ms=0,
    )
    await insert_attempt(conn, attempt)
    return attempt


async def insert_attempt(conn: Connection, attempt: Attempt) -> None:
    """Reserve an attempt (``pending``) and count it on its period."""
    await conn.execute(
        """
        INSERT INTO subscription_attempts (subscription_id, period_no, attempt_no,
            idempotency_key, payment_method, amount_minor, status, started_at)
        VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s)
        """,
        (
            attempt.subscription_id,
            attempt.period_no,
            attempt.attempt_no,
            attempt.idempotency_key,
            attempt.payment_method,
            attempt.amount_minor,
            at(attempt.started_at_ms),
        ),
    )
    await conn.execute(
        """
        UPDATE subscription_periods SET attempts_n = greatest(attempts_n, %s)
        WHERE subscription_id = %s AND period_no = %s
        """,
        (attempt.attempt_no, attempt.subscription_id, attempt.period_no),
    )


async def finish_attempt(
    conn: Connection,
    attempt: Attempt,
    status: str,
    now_ms: int,
    *,
    capture_id: str = "",
    decline_reason: str = "",
    advice_code: str = "",
) -> None:
    """Record an attempt's outcome (``approved``, ``declined`` or ``unknown``)."""
    await conn.execute(
        """
        UPDATE subscription_attempts SET status = %s, capture_id = %s, decline_reason = %s,
            advice_code = %s, finished_at = %s
        WHERE subscription_id = %s AND period_no = %s AND attempt_no = %s
        """,
        (
            status,
            capture_id or None,
            decline_reason,
            advice_code,
            at(now_ms),
            attempt.subscription_id,
            attempt.period_no,
            attempt.attempt_no,
        ),
    )


async def card_attempts_since(conn: Connection, payment_method: str, since_ms: int) -> list[int]:
    """Times of every retry (attempt 2 on) of this card since ``since_ms``: the card-network
    reattempt limit counts them across every subscription of the card (a payment the member
    made herself through a pay link is no merchant's retry)."""
    cursor = await conn.execute(
        """
        SELECT started_at FROM subscription_attempts
        WHERE payment_method = %s AND started_at > %s AND attempt_no >= 2
          AND idempotency_key NOT LIKE 'collect:%%'
        """,
        (payment_method, at(since_ms)),
    )
    return [ms(row["started_at"]) for row in await cursor.fetchall()]


# -- changes --------------------------------------------------------------------------------


async def insert_change(
    conn: Connection,
    sub: Subscription,
    to_plan: str,
    remaining_ms: int,
    period_ms: int,
    credit_minor: int,
    charge_minor: int,
    now_ms: int,
) -> int:
    """Record a plan change and its proration; its number."""
    cursor = await conn.execute(
        """
        INSERT INTO subscription_changes (subscription_id, change_no, from_plan, to_plan,
            period_no, remaining_ms, period_ms, credit_minor, charge_minor, at)
        SELECT %s, coalesce(max(change_no), 0) + 1, %s, %s, %s, %s, %s, %s, %s, %s
        FROM subscription_changes WHERE subscription_id = %s
        RETURNING change_no
        """,
        (
            sub.subscription_id,
            sub.plan_id,
            to_plan,
            sub.period_no,
            remaining_ms,
            period_ms,
            credit_minor,
            charge_minor,
            at(now_ms),
            sub.subscription_id,
        ),
    )
    row = await cursor.fetchone()
    return int(row["change_no"]) if row is not None else 0


async def changes(conn: Connection, subscription_id: str) -> list[dict[str, Any]]:
    """A subscription's plan changes, in order."""
    cursor = await conn.execute(
        "SELECT * FROM subscription_changes WHERE subscription_id = %s ORDER BY change_no",
        (subscription_id,),
    )
    return [
        {
            "change_no": row["change_no"],
            "from_plan": row["from_plan"],
            "to_plan": row["to_plan"],
            "period_no": row["period_no"],
            "remaining_ms": row["remaining_ms"],
            "period_ms": row["period_ms"],
            "credit_minor": row["credit_minor"],
            "charge_minor": row["charge_minor"],
            "at_ms": ms(row["at"]),
        }
        for row in await cursor.fetchall()
    ]
