"""The SQL of the console's analyses: each reads one window of time from the ledger, through an
index on the time it buckets by (migration 0006), and sums in the database.

Buckets are ``date_trunc`` of the instant in UTC (weeks start on Monday). Money stays in
integer minor units per currency; ratios are integer basis points (1 % = 100 bp), computed by
the caller from the integer counts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from enum import Enum
from typing import Any

from settlement.ledger.db import Connection

#: Per UTC day, currency and kind: the revenue of captured settlements (tips and catalog
#: purchases from the itemized lines, each its own kind since migration 0010; each kind of show
#: from the shows' billed amounts), the membership periods paid (kind
#: 'membership', their invoice totals, by the day they were paid), and the captured settlements
#: themselves (metric 'captured'). Two forms, the same rows: :data:`_DAILY` for the few open days
#: a page reads, which looks up each settlement's lines and shows (LATERAL, through their primary
#: keys, which begin with the settlement id; ``OFFSET 0`` keeps the planner from flattening the
#: lookup back into a join, which hashed the whole lines table and made every page take time in
#: proportion to the ledger); :data:`_DAILY_JOINED` for a roll-up of many closed days, where
#: hashing the tables once beats a lookup per settlement.
_TIPS_LOOKUP = """
CROSS JOIN LATERAL (SELECT kind, amount_minor FROM settlement_lines
                    WHERE settlement_id = s.settlement_id AND kind IN ('tip', 'purchase')
                    OFFSET 0) l
"""
_TIPS_JOINED = """
JOIN settlement_lines l ON l.settlement_id = s.settlement_id AND l.kind IN ('tip', 'purchase')
"""
_SHOWS_LOOKUP = """
CROSS JOIN LATERAL (SELECT kind, amount_minor FROM settlement_sessions
                    WHERE settlement_id = s.settlement_id AND amount_minor > 0 OFFSET 0) w
"""
_SHOWS_JOINED = """
JOIN settlement_sessions w ON w.settlement_id = s.settlement_id AND w.amount_minor > 0
"""
#: The captured settlements of the days asked (each part of the daily query filters on it).
_CAPTURED_IN_DAYS = """
WHERE s.outcome = 'captured' AND s.outcome_at >= %(d_since)s AND s.outcome_at < %(d_until)s
"""
_DAILY_TIPS = """
SELECT (s.outcome_at AT TIME ZONE 'UTC')::date AS day, s.currency, 'revenue' AS metric,
       l.kind, sum(l.amount_minor)::bigint AS amount_minor, count(*)::bigint AS items_n
FROM settlements s
"""
_DAILY_SHOWS = """
SELECT (s.outcome_at AT TIME ZONE 'UTC')::date, s.currency, 'revenue', w.kind,
       sum(w.amount_minor)::bigint, count(*)::bigint
FROM settlements s
"""
_DAILY_MEMBERSHIPS = """
SELECT (settled_at AT TIME ZONE 'UTC')::date, currency, 'revenue', 'membership',
       sum(total_minor)::bigint, count(*)::bigint
FROM subscription_periods
WHERE status = 'paid' AND settled_at >= %(d_since)s AND settled_at < %(d_until)s
"""
_DAILY_CAPTURED = """
SELECT (s.outcome_at AT TIME ZONE 'UTC')::date, s.currency, 'captured', '',
       sum(s.captured_minor)::bigint, count(*)::bigint
FROM settlements s
"""


def _daily(tips_lines: str, shows_lines: str) -> str:
    """The daily query with the tips' and shows' lines found by ``tips_lines`` and
    ``shows_lines``: its parts, each grouped by (day, currency, metric, kind), in one union."""
    parts = (
        _DAILY_TIPS + tips_lines + _CAPTURED_IN_DAYS,
        _DAILY_SHOWS + shows_lines + _CAPTURED_IN_DAYS,
        _DAILY_MEMBERSHIPS,
        _DAILY_CAPTURED + _CAPTURED_IN_DAYS,
    )
    return "UNION ALL".join(part + "GROUP BY 1, 2, 3, 4\n" for part in parts)


_DAILY = _daily(_TIPS_LOOKUP, _SHOWS_LOOKUP)
_DAILY_JOINED = _daily(_TIPS_JOINED, _SHOWS_JOINED)

#: Closed days missing from the aggregate, in ``[since, until)``.
_MISSING_DAYS = """
SELECT d::date AS day FROM generate_series(%(since)s::date, %(until)s::date - 1, '1 day') d
WHERE NOT EXISTS (SELECT 1 FROM console_revenue_days_done done WHERE done.day = d::date)
ORDER BY 1
"""

_ROLL_UP = (
    "INSERT INTO console_revenue_days (day, currency, metric, kind, amount_minor, items_n) "
    + _DAILY_JOINED
    + " ON CONFLICT DO NOTHING"
)

_DONE = """
INSERT INTO console_revenue_days_done (day, rolled_at)
SELECT unnest(%(days)s::date[]), %(at)s ON CONFLICT DO NOTHING
"""

#: Closed days from the aggregate, open days from the ledger itself. (Queries here are joined
#: from constant parts only; every value is bound by the server, never spliced.)
_DAYS_HEAD = """
WITH days AS (
    SELECT day, currency, metric, kind, amount_minor, items_n FROM console_revenue_days
    WHERE day >= %(since)s::date AND day < %(closed)s::date
    UNION ALL
"""
_DAYS = "".join((_DAYS_HEAD, _DAILY, ")"))

_REVENUE_BY_KIND_TAIL = """
SELECT date_trunc(%(period)s, day::timestamp) AS bucket, currency, kind,
       sum(amount_minor)::bigint AS amount_minor, sum(items_n)::bigint AS items_n
FROM days
WHERE metric = 'revenue' AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
"""
_REVENUE_BY_KIND = "".join((_DAYS, _REVENUE_BY_KIND_TAIL))

#: Refunds and disputes per bucket, beside the captured settlements they are a ratio of.
_REFUNDS_DISPUTES_TAIL = """,
captured AS (
    SELECT date_trunc(%(period)s, day::timestamp) AS bucket, currency, sum(items_n) AS n,
           sum(amount_minor) AS minor
    FROM days
    WHERE metric = 'captured' AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)
    GROUP BY 1, 2),
refunded AS (
    SELECT date_trunc(%(period)s, requested_at AT TIME ZONE 'UTC') AS bucket, currency,
           count(*) AS n, sum(amount_minor) AS minor
    FROM refunds
    WHERE status = 'succeeded' AND requested_at >= %(since)s AND requested_at < %(until)s
      AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)
    GROUP BY 1, 2),
disputed AS (
    SELECT date_trunc(%(period)s, opened_at AT TIME ZONE 'UTC') AS bucket, currency,
           count(*) AS n, sum(amount_minor) AS minor,
           sum(amount_minor) FILTER (WHERE status = 'lost') AS lost_minor
    FROM disputes
    WHERE opened_at >= %(since)s AND opened_at < %(until)s
      AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)
    GROUP BY 1, 2)
SELECT bucket, currency,
       coalesce(c.n, 0)::bigint AS captured_n, coalesce(c.minor, 0)::bigint AS captured_minor,
       coalesce(r.n, 0)::bigint AS refunds_n, coalesce(r.minor, 0)::bigint AS refunds_minor,
       coalesce(d.n, 0)::bigint AS disputes_n, coalesce(d.minor, 0)::bigint AS disputes_minor,
       coalesce(d.lost_minor, 0)::bigint AS chargebacks_lost_minor
FROM captured c
FULL JOIN refunded r USING (bucket, currency)
FULL JOIN disputed d USING (bucket, currency)
ORDER BY 1, 2
"""
_REFUNDS_DISPUTES = "".join((_DAYS, _REFUNDS_DISPUTES_TAIL))

#: Collection cases by the bucket they opened in: what was owed, what was paid back.
_COLLECTION_RECOVERY = """
SELECT date_trunc(%(period)s, opened_at AT TIME ZONE 'UTC') AS bucket, currency,
       count(*)::bigint AS cases_n,
       sum(amount_minor)::bigint AS owed_minor,
       count(*) FILTER (WHERE state = 'paid')::bigint AS paid_n,
       coalesce(sum(amount_minor) FILTER (WHERE state = 'paid'), 0)::bigint AS paid_minor,
       coalesce(sum(amount_minor) FILTER (WHERE state = 'written_off'), 0)::bigint
           AS written_off_minor
FROM collection_cases
WHERE opened_at >= %(since)s AND opened_at < %(until)s
  AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)
GROUP BY 1, 2
ORDER BY 1, 2
"""

#: The models that earned most in the window (their share of collected charges).
_TOP_MODELS = """
SELECT room, currency, sum(share_minor)::bigint AS share_minor,
       sum(gross_minor)::bigint AS gross_minor, count(*)::bigint AS settlements_n
FROM model_earnings
WHERE collected AND outcome_at >= %(since)s AND outcome_at < %(until)s
  AND (%(currency)s::text IS NULL OR currency = %(currency)s::text)
GROUP BY 1, 2
ORDER BY share_minor DESC, room, currency
LIMIT %(limit)s
"""


async def _rows(conn: Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cursor = await conn.execute(sql, params)
    return list(await cursor.fetchall())


def _params(period: str, since: datetime, until: datetime, currency: str | None) -> dict[str, Any]:
    return {"period": period, "since": since, "until": until, "currency": currency}


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, UTC)


async def roll_up(conn: Connection, since: date, closed: date, at: datetime) -> int:
    """Add the closed days of ``[since, closed)`` missing from the revenue aggregate; the number
    of days added. Each day is read from the ledger once; a race rolls a day twice harmlessly
    (the same rows, ON CONFLICT DO NOTHING)."""
    if since >= closed:
        return 0
    cursor = await conn.execute(_MISSING_DAYS, {"since": since, "until": closed})
    missing: list[date] = [row["day"] for row in await cursor.fetchall()]
    if not missing:
        return 0
    async with conn.transaction():
        await conn.execute(
            _ROLL_UP,
            {
                "d_since": _day_start(missing[0]),
                "d_until": _day_start(missing[-1] + timedelta(days=1)),
            },
        )
        await conn.execute(_DONE, {"days": missing, "at": at})
    return len(missing)


def _day_params(
    period: str, since: datetime, until: datetime, currency: str | None, closed: date
) -> dict[str, Any]:
    """Parameters of a query over ``_DAYS``: the aggregate up to ``closed``, the ledger after."""
    closed_at = max(since, min(until, _day_start(closed)))
    return {
        **_params(period, since, until, currency),
        "closed": closed_at.date(),
        "d_since": closed_at,
        "d_until": until,
    }


class Daily(Enum):
    """The analyses that read the days before their closed day from the daily aggregate."""

    #: Per bucket, currency and kind: the revenue of captured settlements.
    REVENUE_BY_KIND = _REVENUE_BY_KIND
    #: Per bucket and currency: captures, refunds, disputes opened and chargebacks lost.
    REFUNDS_DISPUTES = _REFUNDS_DISPUTES


async def over_days(
    conn: Connection,
    analysis: Daily,
    period: str,
    since: datetime,
    until: datetime,
    currency: str | None,
    closed: date,
) -> list[dict[str, Any]]:
    """The rows of ``analysis``: days before ``closed`` from the aggregate (which
    :func:`roll_up` must have filled), the rest from the ledger."""
    return await _rows(conn, analysis.value, _day_params(period, since, until, currency, closed))


async def collection_recovery(
    conn: Connection, period: str, since: datetime, until: datetime, currency: str | None
) -> list[dict[str, Any]]:
    """Per bucket and currency: collection cases opened, owed, paid and written off."""
    return await _rows(conn, _COLLECTION_RECOVERY, _params(period, since, until, currency))


async def top_models(
    conn: Connection, since: datetime, until: datetime, currency: str | None, limit: int
) -> list[dict[str, Any]]:
    """The ``limit`` rooms (per currency) with the largest collected share in the window."""
    params = {"since": since, "until": until, "currency": currency, "limit": limit}
    return await _rows(conn, _TOP_MODELS, params)
