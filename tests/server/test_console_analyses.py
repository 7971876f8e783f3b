"""The console's analyses against a real server and a seeded ledger (every database rule on):
each figure equals what the seed wrote, by day, week and month, JSON and CSV alike."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from loadtest import console_seed
from tests.support.console import ConsoleClient, insert_operator, logged_in
from tests.support.processes import TipmeterProcess, serving

SEEDED_N = 400
SINCE = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 60
WINDOW = {"since": "2026-09-01", "until": "2026-11-01"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    with serving(tmp_path_factory, "analyses") as process:
        console_seed.seed(
            process.env["TIPMETER_DATABASE_URL"], settlements_n=SEEDED_N, since=SINCE, days=DAYS
        )
        insert_operator(process, "rio", "read_only")
        yield process


@pytest_asyncio.fixture(loop_scope="module")
async def reader(server: TipmeterProcess) -> AsyncIterator[ConsoleClient]:
    async with await logged_in(server, "rio") as client:
        yield client


def expected_revenue() -> Counter[tuple[str, str]]:
    """Revenue by (currency, kind), computed from the seed's rules, not from the database."""
    totals: Counter[tuple[str, str]] = Counter()
    for i in range(SEEDED_N):
        if i % console_seed.DECLINED_EVERY == 0:
            continue
        currency = "EUR" if (i // 7) % 4 == 0 else "USD"
        totals[(currency, "tip")] += 100 + (i % 7) * 50
        totals[(currency, ("private", "spy", "cam2cam")[i % 3])] += 60 * (30 + (i % 5) * 10)
    return totals


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("period", ["day", "week", "month"])
async def test_revenue_by_kind_adds_up_to_the_seeded_lines(
    reader: ConsoleClient, period: str
) -> None:
    response = await reader.get(
        "/console/api/analyses/revenue", params={**WINDOW, "period": period}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    got: Counter[tuple[str, str]] = Counter()
    for row in body["rows"]:
        if row["kind"] != "membership":  # tests/server/test_console_recurring.py checks them
            got[(row["currency"], row["kind"])] += row["amount_minor"]
        assert isinstance(row["amount_minor"], int)
    assert got == expected_revenue()
    buckets = {row["bucket"] for row in body["rows"]}
    if period == "day":
        assert len(buckets) == DAYS
    if period == "month":
        assert buckets == {"2026-09-01", "2026-10-01"}


async def test_closed_days_are_rolled_up_once(
    reader: ConsoleClient, server: TipmeterProcess
) -> None:
    import psycopg

    await reader.get("/console/api/analyses/revenue", params={**WINDOW, "period": "day"})
    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        done = conn.execute("SELECT count(*) FROM console_revenue_days_done").fetchone()
        rolled = conn.execute(
            "SELECT sum(amount_minor) FROM console_revenue_days WHERE metric = 'revenue' "
            "AND kind <> 'membership'"
        ).fetchone()
    # The window's 61 days ended long ago: every one is in the aggregate, whose revenue is the
    # seed's (the analysis read it from there).
    assert done is not None
    assert done[0] == 61
    assert rolled is not None
    assert rolled[0] == sum(expected_revenue().values())


async def test_a_currency_filter_keeps_only_that_currency(reader: ConsoleClient) -> None:
    response = await reader.get(
        "/console/api/analyses/revenue", params={**WINDOW, "period": "month", "currency": "EUR"}
    )
    rows = response.json()["rows"]
    assert rows
    assert {row["currency"] for row in rows} == {"EUR"}
    assert sum(row["amount_minor"] for row in rows if row["kind"] != "membership") == sum(
        v for (cur, _), v in expected_revenue().items() if cur == "EUR"
    )


async def test_refunds_and_disputes_with_the_ratio_against_its_alert_level(
    reader: ConsoleClient,
) -> None:
    response = await reader.get(
        "/console/api/analyses/refunds", params={**WINDOW, "period": "month"}
    )
    body = response.json()
    assert body["alert_level_bp"] == 150
    captured = [i for i in range(SEEDED_N) if i % console_seed.DECLINED_EVERY]
    refunds = [i for i in captured if i % console_seed.REFUNDED_EVERY == 1]
    disputes = [i for i in captured if i % console_seed.DISPUTED_EVERY == 3]
    assert sum(r["captured_n"] for r in body["rows"]) == len(captured)
    assert sum(r["refunds_n"] for r in body["rows"]) == len(refunds)
    assert sum(r["refunds_minor"] for r in body["rows"]) == sum(100 + (i % 7) * 50 for i in refunds)
    assert sum(r["disputes_n"] for r in body["rows"]) == len(disputes)
    for row in body["rows"]:
        assert row["dispute_ratio_bp"] == row["disputes_n"] * 10_000 // max(row["captured_n"], 1)
        assert row["alert"] == (row["dispute_ratio_bp"] > 150)
    # The seed's two disputes: one in a EUR month (few captures: over the alert level), one in a
    # USD month (many: under it), so both sides of the alert are exercised.
    assert {row["alert"] for row in body["rows"] if row["disputes_n"]} == {True, False}


async def test_collection_recovery_rate(reader: ConsoleClient) -> None:
    response = await reader.get(
        "/console/api/analyses/collection", params={**WINDOW, "period": "month"}
    )
    rows = response.json()["rows"]
    declined = [i for i in range(SEEDED_N) if i % console_seed.DECLINED_EVERY == 0]
    assert sum(r["cases_n"] for r in rows) == len(declined)
    paid = [i for i in declined if (i // console_seed.DECLINED_EVERY) % 2 == 0]
    assert sum(r["paid_n"] for r in rows) == len(paid)
    for row in rows:
        assert row["recovery_bp"] == row["paid_minor"] * 10_000 // row["owed_minor"]


async def test_top_models_are_ordered_by_their_share(reader: ConsoleClient) -> None:
    response = await reader.get("/console/api/analyses/top-models", params=WINDOW)
    rows = response.json()["rows"]
    assert 0 < len(rows) <= 20
    shares = [row["share_minor"] for row in rows]
    assert shares == sorted(shares, reverse=True)
    assert all(row["room"].startswith("seed-m") for row in rows)


async def test_each_analysis_downloads_as_csv_and_the_download_is_audited(
    reader: ConsoleClient, server: TipmeterProcess
) -> None:
    for name in ("revenue", "refunds", "collection", "top-models"):
        response = await reader.get(
            f"/console/api/analyses/{name}", params={**WINDOW, "period": "week", "format": "csv"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert "attachment" in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        json_rows = (
            await reader.get(f"/console/api/analyses/{name}", params={**WINDOW, "period": "week"})
        ).json()["rows"]
        assert len(rows) == len(json_rows) > 0
        assert {k: str(v) for k, v in json_rows[0].items()} == rows[0]
    import psycopg

    with psycopg.connect(server.env["TIPMETER_DATABASE_URL"]) as conn:
        targets = [
            r[0]
            for r in conn.execute(
                "SELECT target FROM console_audit WHERE action = 'analysis_csv' ORDER BY audit_no"
            ).fetchall()
        ]
    assert targets == ["revenue", "refunds", "collection", "top-models"]


async def test_bad_windows_are_refused(reader: ConsoleClient) -> None:
    cases = [
        ({"period": "year"}, "invalid_field"),
        ({"since": "2026-13-01"}, "invalid_field"),
        ({"since": "2026-10-01", "until": "2026-09-01"}, "invalid_field"),
        ({"since": "2024-01-01", "until": "2026-01-01"}, "window_too_long"),
        ({"currency": "usd"}, "invalid_currency"),
    ]
    for params, code in cases:
        response = await reader.get("/console/api/analyses/revenue", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == code
    assert (await reader.get("/console/api/analyses/nothing")).status_code == 404
