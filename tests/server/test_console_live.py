"""The console's live panel over a real WebSocket: it opens only for a live session from the
console's own origin, and its snapshot reports the ledger's revenue and declines of today, the
settlement stream and the dead letters in Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import websockets
from redis import Redis

from loadtest import console_seed
from metering import keys
from server.console import auth
from tests.support.console import insert_operator, logged_in
from tests.support.processes import TipmeterProcess, serving

pytestmark = pytest.mark.asyncio(loop_scope="module")

SEEDED_N = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    with serving(tmp_path_factory, "live") as process:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        console_seed.seed(
            process.env["TIPMETER_DATABASE_URL"], settlements_n=SEEDED_N, since=today, days=1
        )
        insert_operator(process, "rio", "read_only")
        yield process


def ws_url(server: TipmeterProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/console/live"


async def test_no_session_or_another_origin_is_refused_at_the_handshake(
    server: TipmeterProcess,
) -> None:
    origin = f"http://127.0.0.1:{server.port}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(ws_url(server), origin=websockets.Origin(origin)):
            pass
    assert refused.value.response.status_code == 403
    client = await logged_in(server, "rio")
    async with client:
        cookie = f"{auth.COOKIE_NAME}={client.http.cookies[auth.COOKIE_NAME]}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(
            ws_url(server),
            origin=websockets.Origin("https://evil.example"),
            additional_headers={"Cookie": cookie},
        ):
            pass
    assert refused.value.response.status_code == 403


async def test_a_snapshot_reports_today_from_the_ledger_and_redis(server: TipmeterProcess) -> None:
    redis = Redis.from_url(server.env["TIPMETER_REDIS_URL"])
    redis.xadd(keys.settle_dead_letters(), {"why": "test"})
    redis.close()
    client = await logged_in(server, "rio")
    async with client:
        cookie = f"{auth.COOKIE_NAME}={client.http.cookies[auth.COOKIE_NAME]}"
    async with websockets.connect(
        ws_url(server),
        origin=websockets.Origin(f"http://127.0.0.1:{server.port}"),
        additional_headers={"Cookie": cookie},
    ) as ws:
        first = json.loads(await ws.recv())
        second = json.loads(await ws.recv())
    captured = [i for i in range(SEEDED_N) if i % console_seed.DECLINED_EVERY]
    expected: dict[str, int] = {}
    for i in captured:
        currency = "EUR" if (i // 7) % 4 == 0 else "USD"
        expected[currency] = (
            expected.get(currency, 0) + 100 + (i % 7) * 50 + 60 * (30 + (i % 5) * 10)
        )
    assert {r["currency"]: r["amount_minor"] for r in first["revenue_today"]} == expected
    declined = SEEDED_N - len(captured)
    assert first["declines_today"] == [{"reason": "insufficient_funds", "n": declined}]
    assert first["settlement_dead_letters"] == 1
    assert first["settlement_queue"] == 0
    assert set(first["connections"]) == {"viewer", "model", "broadcast"}
    assert first["shows"] == {}
    assert second["at_ms"] > first["at_ms"]


async def test_metrics_expose_the_backlog_read_from_redis(server: TipmeterProcess) -> None:
    redis = Redis.from_url(server.env["TIPMETER_REDIS_URL"])
    redis.xadd(keys.webhook_dead_letters(), {"why": "test"})
    redis.close()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    lines = set(scraped.text.splitlines())
    assert "tipmeter_webhook_dead_letters 1.0" in lines
    assert "tipmeter_settlement_queue_entries 0.0" in lines
