"""The console's membership analyses: recurring revenue, churn and trial conversion.

Theory of operation. Recurring revenue and churn are counts *at an instant* (the start of each
bucket), not sums over a bucket, so they are read as edges: a paid period adds one to its
plan's count where it starts and takes it away where it ends (or where its subscription ended,
if sooner); a subscription is live from ``started_at`` to ``ended_at``. The database sums the
edges per bucket (an edge at instant *t* counts from the first bucket starting at or after
*t*; every edge before the window in the first bucket), through the indexes of migration 0012,
and :func:`running` adds them up bucket by bucket — one pass, whatever the window's length.

- ``mrr`` — monthly recurring revenue per bucket and currency: every subscription with a paid
  period running at the bucket's start, at its plan's price in that currency normalized to a
  month by :func:`monthly_minor`; with the number of such subscriptions.
- ``churn`` — memberships that ended (cancelled or expired) in the bucket over those live at
  its start (any state but ``cancelled``/``expired``), in basis points.
- ``trials`` — trials that ended in the bucket (at the trial's end, or at a cancellation in the
  trial) and those of them whose first period was paid, with the conversion rate in basis points.
  A trial still running is not counted; one whose first charge is still being dunned counts as
  not converted until it is paid.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from server.console.queries import _rows
from settlement.ledger.db import Connection
from settlement.subscriptions import store
from settlement.subscriptions.periods import PeriodUnit
from settlement.subscriptions.plans import Plan

#: The normalization of a plan's period to a month: a month is a twelfth of a 365-day year.
DAYS_PER_YEAR: Final = 365
MONTHS_PER_YEAR: Final = 12
#: One in basis points.
_BP: Final = 10_000

Rows = list[dict[str, Any]]


def monthly_minor(price_minor: int, unit: PeriodUnit, length: int) -> int:
    """A period's price as a month's, rounded half up — the one rule recurring revenue uses:
    a price per ``length`` months is divided by ``length``, per ``length`` years by
    ``12 × length``, per ``length`` days multiplied by 365 / (12 × ``length``)."""
    if unit is PeriodUnit.MONTH:
        numerator, denominator = price_minor, length
    elif unit is PeriodUnit.YEAR:
        numerator, denominator = price_minor, MONTHS_PER_YEAR * length
    else:
        numerator, denominator = price_minor * DAYS_PER_YEAR, MONTHS_PER_YEAR * length
    return (2 * numerator + denominator) // (2 * denominator)


def buckets(period: str, since: datetime, until: datetime) -> list[datetime]:
    """The starts of the buckets of ``[since, until)``: the first is ``since`` truncated to its
    day, week (Monday) or month, in UTC (naive, as ``date_trunc`` answers)."""
    start = since.astimezone(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        start -= timedelta(days=start.weekday())
    elif period == "month":
        start = start.replace(day=1)
    end = until.astimezone(UTC).replace(tzinfo=None)
    found = []
    while start < end:
        found.append(start)
        if period == "day":
            start += timedelta(days=1)
        elif period == "week":
            start += timedelta(days=7)
        else:
            start = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return found


def _ceil(column: str) -> str:
    """SQL: the first bucket starting at or after ``column`` (never before the window's first);
    ``column`` is one of this module's fixed expressions, never a value."""
    t = f"({column} AT TIME ZONE 'UTC')"
    trunc = f"date_trunc(%(period)s, {t})"
    return (
        f"greatest(%(first)s::timestamp, CASE WHEN {trunc} = {t} THEN {t} "
        f"ELSE {trunc} + ('1 ' || %(period)s)::interval END)"
    )


_MRR_EDGES = f"""
SELECT bucket, currency, plan_id, sum(d)::bigint AS delta FROM (
    SELECT {_ceil("p.starts_at")} AS bucket, p.currency, p.plan_id, 1 AS d
    FROM subscription_periods p
    WHERE p.status = 'paid' AND p.starts_at < %(until)s
    UNION ALL
    SELECT {_ceil("least(p.ends_at, coalesce(s.ended_at, p.ends_at))")}, p.currency, p.plan_id, -1
    FROM subscription_periods p JOIN subscriptions s USING (subscription_id)
    WHERE p.status = 'paid' AND p.starts_at < %(until)s
      AND least(p.ends_at, coalesce(s.ended_at, p.ends_at)) < %(until)s
) edges
WHERE %(currency)s::text IS NULL OR currency = %(currency)s::text
GROUP BY 1, 2, 3
"""  # noqa: S608 - built from this module's fixed expressions, never a value

_CHURN_EDGES = f"""
SELECT bucket, currency, edge, sum(n)::bigint AS n FROM (
    SELECT {_ceil("started_at")} AS bucket, currency, 'live' AS edge, 1 AS n
    FROM subscriptions WHERE started_at < %(until)s
    UNION ALL
    SELECT {_ceil("ended_at")}, currency, 'live', -1
    FROM subscriptions WHERE ended_at < %(until)s
    UNION ALL
    SELECT date_trunc(%(period)s, ended_at AT TIME ZONE 'UTC'), currency, 'ended', 1
    FROM subscriptions WHERE ended_at >= %(first)s AT TIME ZONE 'UTC' AND ended_at < %(until)s
) edges
WHERE %(currency)s::text IS NULL OR currency = %(currency)s::text
GROUP BY 1, 2, 3
"""  # noqa: S608 - built from this module's fixed expressions, never a value

_TRIAL_END = "least(s.anchor_at, coalesce(s.ended_at, s.anchor_at))"
_TRIALS = f"""
SELECT date_trunc(%(period)s, {_TRIAL_END} AT TIME ZONE 'UTC') AS bucket, s.currency,
       count(*)::bigint AS trials_ended_n,
       count(*) FILTER (WHERE p.status = 'paid')::bigint AS converted_n
FROM subscriptions s
LEFT JOIN subscription_periods p ON p.subscription_id = s.subscription_id AND p.period_no = 1
WHERE s.anchor_at > s.started_at
  AND {_TRIAL_END} >= %(first)s AT TIME ZONE 'UTC' AND {_TRIAL_END} < %(until)s
  AND {_TRIAL_END} <= %(now)s
  AND (%(currency)s::text IS NULL OR s.currency = %(currency)s::text)
GROUP BY 1, 2
ORDER BY 1, 2
"""  # noqa: S608 - fixed expressions, never a value


def running(
    starts: list[datetime], deltas: dict[tuple[Any, ...], dict[datetime, int]]
) -> dict[tuple[Any, ...], list[int]]:
    """Each key's running total at each bucket start (its edges summed up to there)."""
    totals: dict[tuple[Any, ...], list[int]] = {}
    for key, by_bucket in deltas.items():
        count, counts = 0, []
        for start in starts:
            count += by_bucket.get(start, 0)
            counts.append(count)
        totals[key] = counts
    return totals


def _params(
    period: str, since: datetime, until: datetime, currency: str | None, starts: list[datetime]
) -> dict[str, Any]:
    return {
        "period": period,
        "until": until,
        "currency": currency,
        "first": starts[0] if starts else since.replace(tzinfo=None),
    }


async def mrr(
    conn: Connection, period: str, since: datetime, until: datetime, currency: str | None
) -> Rows:
    """Per bucket and currency: recurring revenue at the bucket's start, and its subscriptions."""
    starts = buckets(period, since, until)
    edges = await _rows(conn, _MRR_EDGES, _params(period, since, until, currency, starts))
    plans: dict[str, Plan] = {plan.plan_id: plan for plan in await store.list_plans(conn)}
    deltas: dict[tuple[Any, ...], dict[datetime, int]] = defaultdict(dict)
    for row in edges:
        deltas[(row["currency"].strip(), row["plan_id"])][row["bucket"]] = row["delta"]
    out: dict[tuple[datetime, str], dict[str, Any]] = {}
    for (cur, plan_id), counts in running(starts, deltas).items():
        plan = plans.get(plan_id)
        price = plan.price(cur) if plan is not None else None
        if plan is None or price is None:  # pragma: no cover - a paid period has its price
            continue
        each = monthly_minor(price.price_minor, plan.period_unit, plan.period_length)
        for start, count in zip(starts, counts, strict=True):
            row = out.setdefault(
                (start, cur),
                {"bucket": start, "currency": cur, "mrr_minor": 0, "subscriptions_n": 0},
            )
            row["mrr_minor"] += count * each
            row["subscriptions_n"] += count
    return [out[key] for key in sorted(out)]


async def churn(
    conn: Connection, period: str, since: datetime, until: datetime, currency: str | None
) -> Rows:
    """Per bucket and currency: live at the start, ended in the bucket, churn in bp."""
    starts = buckets(period, since, until)
    edges = await _rows(conn, _CHURN_EDGES, _params(period, since, until, currency, starts))
    live: dict[tuple[Any, ...], dict[datetime, int]] = defaultdict(dict)
    ended: dict[tuple[str, datetime], int] = {}
    for row in edges:
        cur = row["currency"].strip()
        if row["edge"] == "live":
            live[(cur,)][row["bucket"]] = row["n"]
        else:
            ended[(cur, row["bucket"])] = row["n"]
    rows = []
    for (cur,), counts in sorted(running(starts, live).items()):
        for start, count in zip(starts, counts, strict=True):
            gone = ended.get((cur, start), 0)
            rows.append(
                {
                    "bucket": start,
                    "currency": cur,
                    "live_at_start_n": count,
                    "ended_n": gone,
                    "churn_bp": gone * _BP // count if count else 0,
                }
            )
    return sorted(rows, key=lambda row: (row["bucket"], row["currency"]))


async def trials(
    conn: Connection,
    period: str,
    since: datetime,
    until: datetime,
    currency: str | None,
    now: datetime,
) -> Rows:
    """Per bucket and currency: trials ended, converted, and the conversion in bp."""
    starts = buckets(period, since, until)
    params = {**_params(period, since, until, currency, starts), "now": now}
    rows = await _rows(conn, _TRIALS, params)
    for row in rows:
        row["currency"] = row["currency"].strip()
        ended_n, converted_n = row["trials_ended_n"], row["converted_n"]
        row["conversion_bp"] = converted_n * _BP // ended_n if ended_n else 0
    return rows
