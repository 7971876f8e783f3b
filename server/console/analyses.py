"""The console's analyses of the ledger: JSON for its charts, CSV for a spreadsheet.

``GET /console/api/analyses/{name}?period=day|week|month&since=YYYY-MM-DD&until=YYYY-MM-DD
&currency=USD&format=json|csv`` — ``since`` inclusive, ``until`` exclusive (default: the 30
days up to and including today), at most :data:`WINDOW_DAYS_MAX` days. The names:

- ``revenue`` — revenue by kind: captured settlements' tips, purchases, private, spy and
  cam2cam shows, and memberships (periods paid);
- ``refunds`` — refunds, disputes opened and chargebacks lost beside captures, with the dispute
  ratio (disputes opened over captured settlements, in basis points) and whether it passes the
  alert level (``TIPMETER_DISPUTE_RATIO_ALERT_BP``);
- ``collection`` — collection cases opened, owed and paid back, with the recovery rate (paid
  over owed, in basis points);
- ``top-models`` — the rooms with the largest collected share in the window (no buckets);
- ``mrr``, ``churn``, ``trials`` — recurring revenue, churn and trial conversion of memberships
  (:mod:`server.console.recurring`).

Every figure is read by :mod:`server.console.queries` through an index on its time column;
revenue and captured settlements of closed days (ended :data:`CLOSED_AFTER_DAYS` days ago or
more) from the daily aggregate ``console_revenue_days``, filled on first read.
A CSV download is audited (data leaving the console); a JSON read is not (it is the page).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from metering.money import is_currency
from server.api import ApiError
from server.console import queries, recurring
from server.console.routes import Operator, now, write_audit
from server.runtime import Runtime
from settlement.ledger.db import Connection

#: Bucket sizes an analysis may use.
PERIODS: Final = ("day", "week", "month")
#: The window a request names when it names none, in days (ending with today).
WINDOW_DAYS_DEFAULT: Final = 30
#: The longest window one request may read, in days (a bit more than a year of days).
WINDOW_DAYS_MAX: Final = 400
#: Rooms the top-models analysis lists at most.
TOP_MODELS_N: Final = 20
#: A day's revenue is read from the aggregate once it ended this many days ago (a settlement
#: reaches the ledger minutes after its outcome; days leave a wide margin).
CLOSED_AFTER_DAYS: Final = 3
#: One in basis points.
_BP: Final = 10_000

Rows = list[dict[str, Any]]


def _ratio_bp(part: int, whole: int) -> int:
    """``part / whole`` in whole basis points, rounded down (0 when ``whole`` is 0)."""
    return part * _BP // whole if whole else 0


def _day(value: str | None, name: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_field", f"{name} must be a date YYYY-MM-DD") from None


def window(request: Request, rt: Runtime) -> tuple[str, datetime, datetime, str | None]:
    """The period, the window ``[since, until)`` and the currency a request asks for."""
    period = request.query_params.get("period", "day")
    if period not in PERIODS:
        raise ApiError(400, "invalid_field", f"period must be one of {', '.join(PERIODS)}")
    today = now(rt).date()
    until_day = _day(request.query_params.get("until"), "until") or today + timedelta(days=1)
    since_day = _day(request.query_params.get("since"), "since") or until_day - timedelta(
        days=WINDOW_DAYS_DEFAULT
    )
    if not since_day < until_day:
        raise ApiError(400, "invalid_field", "since must be before until")
    if (until_day - since_day).days > WINDOW_DAYS_MAX:
        raise ApiError(400, "window_too_long", f"a window is at most {WINDOW_DAYS_MAX} days")
    currency = request.query_params.get("currency") or None
    if currency is not None and not is_currency(currency):
        raise ApiError(400, "invalid_currency", "currency must be an ISO-4217 code")
    since = datetime.combine(since_day, datetime.min.time(), UTC)
    until = datetime.combine(until_day, datetime.min.time(), UTC)
    return period, since, until, currency


async def _closed(conn: Connection, rt: Runtime, since: datetime, until: datetime) -> date:
    """The first day not read from the aggregate; the window's closed days before it rolled
    up."""
    closed = now(rt).date() - timedelta(days=CLOSED_AFTER_DAYS)
    await queries.roll_up(conn, since.date(), min(closed, until.date()), now(rt))
    return closed


async def _revenue(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    closed = await _closed(conn, rt, since, until)
    return await queries.over_days(
        conn, queries.Daily.REVENUE_BY_KIND, period, since, until, cur, closed
    ), {}


async def _refunds(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    alert_bp = rt.settings.dispute_ratio_alert_bp
    closed = await _closed(conn, rt, since, until)
    rows = await queries.over_days(
        conn, queries.Daily.REFUNDS_DISPUTES, period, since, until, cur, closed
    )
    for row in rows:
        row["dispute_ratio_bp"] = _ratio_bp(row["disputes_n"], row["captured_n"])
        row["alert"] = row["dispute_ratio_bp"] > alert_bp or (
            row["disputes_n"] > 0 and row["captured_n"] == 0
        )
    return rows, {"alert_level_bp": alert_bp}


async def _collection(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    rows = await queries.collection_recovery(conn, period, since, until, cur)
    for row in rows:
        row["recovery_bp"] = _ratio_bp(row["paid_minor"], row["owed_minor"])
    return rows, {}


async def _top_models(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    return await queries.top_models(conn, since, until, cur, TOP_MODELS_N), {}


async def _mrr(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    return await recurring.mrr(conn, period, since, until, cur), {}


async def _churn(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    return await recurring.churn(conn, period, since, until, cur), {}


async def _trials(
    conn: Connection, rt: Runtime, period: str, since: datetime, until: datetime, cur: str | None
) -> tuple[Rows, dict[str, Any]]:
    return await recurring.trials(conn, period, since, until, cur, now(rt)), {}


Analysis = Callable[
    [Connection, Runtime, str, datetime, datetime, str | None],
    Awaitable[tuple[Rows, dict[str, Any]]],
]
#: Every analysis by its name in the URL.
ANALYSES: Final[dict[str, Analysis]] = {
    "revenue": _revenue,
    "refunds": _refunds,
    "collection": _collection,
    "top-models": _top_models,
    "mrr": _mrr,
    "churn": _churn,
    "trials": _trials,
}


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.date().isoformat()
    return value


def to_csv(rows: Rows) -> str:
    """The rows as CSV with a header line (columns in the rows' order)."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


async def read_analysis(
    rt: Runtime, name: str, period: str, since: datetime, until: datetime, currency: str | None
) -> tuple[Rows, dict[str, Any]]:
    """One analysis's rows and its extra fields (the benchmark calls this too)."""
    analysis = ANALYSES[name]
    async with rt.ledger.database.connection() as conn:
        return await analysis(conn, rt, period, since, until, currency)


async def handle_analysis(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``GET /console/api/analyses/{name}``: JSON (default) or CSV (``format=csv``)."""
    name = request.path_params["name"]
    if name not in ANALYSES:
        raise ApiError(404, "not_found", f"analyses: {', '.join(ANALYSES)}")
    period, since, until, currency = window(request, rt)
    rows, extra = await read_analysis(rt, name, period, since, until, currency)
    if request.query_params.get("format") == "csv":
        await write_audit(
            rt,
            operator_id=operator.operator_id,
            action="analysis_csv",
            target=name,
            outcome="ok",
            detail={"period": period, "since": since.isoformat(), "until": until.isoformat()},
            remote=operator.remote_addr,
        )
        filename = f"tipmeter-{name}-{since.date()}-{until.date()}-{period}.csv"
        return Response(
            to_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )
    return JSONResponse(
        {
            "analysis": name,
            "period": period,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "currency": currency,
            **extra,
            "rows": [{k: _cell(v) for k, v in row.items()} for row in rows],
        }
    )
