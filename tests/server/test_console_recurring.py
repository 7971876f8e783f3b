"""The console's membership analyses against a real server and a seeded ledger: recurring
revenue, churn and trial conversion equal a naive count over the seeded rows at each bucket's
start, by day, week and month; memberships show in revenue by kind; CSV like the others."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from loadtest import console_seed
from server.console.recurring import monthly_minor
from settlement.subscriptions.periods import PeriodUnit
from tests.support.console import ConsoleClient, insert_operator, logged_in
from tests.support.processes import TipmeterProcess, serving

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 120
WINDOW = {"since": "2026-03-01", "until": "2026-06-29"}
#: Settlements seeded: one subscription per 50 of them.
SEEDED_N = 90 * console_seed.SETTLEMENTS_PER_SUBSCRIPTION
#: Each seeded plan's price as a month's, worked out by hand (annual: 9999 / 12 = 833.25 → 833,
#: 8999 / 12 = 749.92 → 750).
MONTHLY = {
    ("seed-monthly", "USD"): 999,
    ("seed-monthly", "EUR"): 899,
    ("seed-annual", "USD"): 833,
    ("seed-annual", "EUR"): 750,
    ("seed-fan", "USD"): 499,
    ("seed-fan", "EUR"): 449,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    with serving(tmp_path_factory, "recurring") as process:
        seeded = console_seed.seed(
            process.env["TIPMETER_DATABASE_URL"], settlements_n=SEEDED_N, since=SINCE, days=DAYS
        )
        assert seeded.subscriptions_n == 90
        insert_operator(process, "rio", "read_only")
        yield process


@pytest_asyncio.fixture(loop_scope="module")
async def reader(server: TipmeterProcess) -> AsyncIterator[ConsoleClient]:
    async with await logged_in(server, "rio") as client:
        yield client


pytestmark = pytest.mark.asyncio(loop_scope="module")


def _rows(server: TipmeterProcess, sql: str) -> list[dict[str, Any]]:
    with psycopg.connect(
        server.env["TIPMETER_DATABASE_URL"], row_factory=psycopg.rows.dict_row
    ) as conn:
        return list(conn.execute(sql).fetchall())


def _at(day: str) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC)


def _next(start: datetime, period: str) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


async def test_the_one_rule_normalizes_a_period_to_a_month() -> None:
    assert monthly_minor(1000, PeriodUnit.MONTH, 1) == 1000
    assert monthly_minor(1000, PeriodUnit.MONTH, 3) == 333
    assert monthly_minor(9999, PeriodUnit.YEAR, 1) == 833
    assert monthly_minor(8999, PeriodUnit.YEAR, 1) == 750
    assert monthly_minor(1000, PeriodUnit.DAY, 30) == 1014  # 1000 × 365 / 360, half up
    assert monthly_minor(1, PeriodUnit.YEAR, 2) == 0


@pytest.mark.parametrize("period", ["day", "week", "month"])
async def test_recurring_revenue_at_each_bucket_start(
    reader: ConsoleClient, server: TipmeterProcess, period: str
) -> None:
    body = (
        await reader.get("/console/api/analyses/mrr", params={**WINDOW, "period": period})
    ).json()
    periods = _rows(
        server,
        "SELECT p.plan_id, p.currency, p.starts_at, "
        "least(p.ends_at, coalesce(s.ended_at, p.ends_at)) AS ends_at "
        "FROM subscription_periods p JOIN subscriptions s USING (subscription_id) "
        "WHERE p.status = 'paid'",
    )
    assert body["rows"]
    nonzero = 0
    for row in body["rows"]:
        start = _at(row["bucket"])
        running = [
            p
            for p in periods
            if p["currency"].strip() == row["currency"] and p["starts_at"] <= start < p["ends_at"]
        ]
        expected = sum(MONTHLY[(p["plan_id"], row["currency"])] for p in running)
        assert (row["mrr_minor"], row["subscriptions_n"]) == (expected, len(running)), row
        nonzero += expected > 0
    assert nonzero > len(body["rows"]) // 2
    if period == "month":
        assert {row["bucket"] for row in body["rows"]} == {
            "2026-03-01",
            "2026-04-01",
            "2026-05-01",
            "2026-06-01",
        }


@pytest.mark.parametrize("period", ["day", "week", "month"])
async def test_churn_over_the_live_at_each_bucket_start(
    reader: ConsoleClient, server: TipmeterProcess, period: str
) -> None:
    body = (
        await reader.get("/console/api/analyses/churn", params={**WINDOW, "period": period})
    ).json()
    subs = _rows(server, "SELECT currency, started_at, ended_at FROM subscriptions")
    far = datetime(9999, 1, 1, tzinfo=UTC)
    ended_total = 0
    for row in body["rows"]:
        start = _at(row["bucket"])
        end = _next(start, period)
        mine = [s for s in subs if s["currency"].strip() == row["currency"]]
        live = [s for s in mine if s["started_at"] <= start < (s["ended_at"] or far)]
        ended = [s for s in mine if s["ended_at"] and start <= s["ended_at"] < end]
        assert (row["live_at_start_n"], row["ended_n"]) == (len(live), len(ended)), row
        assert row["churn_bp"] == (len(ended) * 10_000 // len(live) if live else 0)
        ended_total += len(ended)
    window_end = _at(WINDOW["until"])
    assert ended_total == sum(
        1
        for s in subs
        if s["ended_at"] and _at(body["rows"][0]["bucket"]) <= s["ended_at"] < window_end
    )
    assert ended_total > 0


async def test_trial_conversion(reader: ConsoleClient, server: TipmeterProcess) -> None:
    body = (
        await reader.get("/console/api/analyses/trials", params={**WINDOW, "period": "month"})
    ).json()
    trials = _rows(
        server,
        "SELECT s.subscription_id, p.status FROM subscriptions s LEFT JOIN subscription_periods p "
        "ON p.subscription_id = s.subscription_id AND p.period_no = 1 "
        "WHERE s.plan_id = 'seed-fan' AND least(s.anchor_at, coalesce(s.ended_at, s.anchor_at)) "
        "< '2026-06-29'",
    )
    ended_n = sum(row["trials_ended_n"] for row in body["rows"])
    converted_n = sum(row["converted_n"] for row in body["rows"])
    assert ended_n == len(trials)
    assert converted_n == sum(1 for t in trials if t["status"] == "paid")
    # The seed: one fan-club trial in three ends without converting.
    assert 0 < converted_n < ended_n
    for row in body["rows"]:
        assert row["conversion_bp"] == row["converted_n"] * 10_000 // row["trials_ended_n"]


async def test_memberships_show_in_revenue_by_kind(
    reader: ConsoleClient, server: TipmeterProcess
) -> None:
    body = (
        await reader.get("/console/api/analyses/revenue", params={**WINDOW, "period": "month"})
    ).json()
    paid = _rows(
        server,
        "SELECT coalesce(sum(total_minor), 0) AS total FROM subscription_periods "
        "WHERE status = 'paid' AND settled_at < '2026-06-29'",
    )[0]["total"]
    got = sum(row["amount_minor"] for row in body["rows"] if row["kind"] == "membership")
    assert got == paid > 0


async def test_the_membership_analyses_download_as_csv(reader: ConsoleClient) -> None:
    for name in ("mrr", "churn", "trials"):
        params = {**WINDOW, "period": "week"}
        response = await reader.get(
            f"/console/api/analyses/{name}", params={**params, "format": "csv"}
        )
        assert response.status_code == 200
        rows = list(csv.DictReader(io.StringIO(response.text)))
        json_rows = (await reader.get(f"/console/api/analyses/{name}", params=params)).json()[
            "rows"
        ]
        assert len(rows) == len(json_rows) > 0
        assert {k: str(v) for k, v in json_rows[-1].items()} == rows[-1]
