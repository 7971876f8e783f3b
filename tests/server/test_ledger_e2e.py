"""The ledger of record as a user of the server sees it: real server processes on loopback, a
real redis-server and a real PostgreSQL; statements that outlive their Redis keys, and tabs that
outlive a restart of the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from clients.sdk import Client
from clients.tickets import Role
from metering import keys
from server.embedded_redis import RedisServer
from tests.server.conftest import api, open_tab
from tests.server.test_settlement_e2e import settled_statement
from tests.support import postgres
from tests.support.processes import TipmeterProcess, ticket
from tests.support.redis_procs import start_standalone
from tests.support.waiting import eventually


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_standalone(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


async def _get(server: TipmeterProcess, path: str) -> dict[str, Any]:
    async with api(server) as http:
        response = await http.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_same_answers_before_and_after_the_tabs_keys_expire(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    server = TipmeterProcess(
        ["serve"],
        {"TIPMETER_REDIS_URL": own_redis.url, "TIPMETER_REDIS_RETENTION_S": "1"},
        cwd=tmp_path,
    ).start()
    try:
        tab = await open_tab(server, "c-keep", cap_minor=5_000)
        tab_id = tab["tab_id"]
        async with Client(server.ws_url, ticket(Role.VIEWER, "c-keep", currency="USD")) as viewer:
            first = await viewer.tip("alice", 700, "USD", tip_id="tip-keep-1")
            await viewer.tip("bella", 300, "USD")
            async with api(server) as http:
                queued = await http.post(f"/v1/customers/c-keep/tabs/{tab_id}/settle")
            assert queued.status_code == 202, queued.text
            statement = await settled_statement(server, "c-keep", tab_id)
            paths = [
                f"/v1/customers/c-keep/tabs/{tab_id}",
                f"/v1/customers/c-keep/tabs/{tab_id}/statement",
                f"/v1/captures/{statement['capture_id']}",
                "/v1/rooms/alice/earnings",
            ]
            before = [await _get(server, path) for path in paths]
            assert before[1] == statement
            assert before[3]["settled"] == [
                {
                    "currency": "USD",
                    "gross_minor": 700,
                    "share_minor": 420,
                    "pending_minor": 0,
                    "settlements": 1,
                }
            ]

            client = redis.Redis.from_url(own_redis.url)
            tab_key = keys.tab("c-keep", tab_id)
            lines_key = keys.tab_lines("c-keep", tab_id)
            # Retired once the ledger holds it: an expiry on the tab's keys (-1: none yet; -2:
            # expired already, a second after), then gone.
            await eventually(lambda: client.pttl(tab_key) != -1, what="the retention expiry")
            await eventually(
                lambda: not client.exists(tab_key, lines_key), what="the expiry of the tab's keys"
            )

            after = [await _get(server, path) for path in paths]
            assert after == before
            # A tip retried after its tab's keys expired is still applied at most once.
            again = await viewer.tip("alice", 700, "USD", tip_id="tip-keep-1")
            assert again.status == "duplicate"
            assert again.tab is not None
            assert first.tab is not None
            assert again.tab.accrued_minor == first.tab.accrued_minor == 700  # the original
            client.close()
    finally:
        server.stop()


async def test_a_tab_opened_before_a_restart_raises_and_settles_after_it(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """The in-process sandbox keeps its record in the data folder: a restarted server still
    knows the holds it placed before (it used to answer "no hold 'auth_…'")."""
    env = {
        "TIPMETER_REDIS_URL": own_redis.url,
        "TIPMETER_DATA_DIR": str(tmp_path / "data"),
        "TIPMETER_DATABASE_URL": postgres.fresh_database("restart"),
    }
    first = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:
        raised_tab = await open_tab(first, "c-raise", cap_minor=2_000)
        settled_tab = await open_tab(first, "c-settle", cap_minor=2_000)
    finally:
        assert first.stop() == 0
    second = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:
        async with api(second) as http:
            raised = await http.post(
                f"/v1/customers/c-raise/tabs/{raised_tab['tab_id']}/cap", json={"cap_minor": 4_000}
            )
        assert raised.status_code == 200, raised.text
        assert raised.json()["cap_minor"] == 4_000
        async with Client(second.ws_url, ticket(Role.VIEWER, "c-settle", currency="USD")) as v:
            assert (await v.tip("alice", 1_500, "USD")).status == "applied"
        async with api(second) as http:
            queued = await http.post(f"/v1/customers/c-settle/tabs/{settled_tab['tab_id']}/settle")
        assert queued.status_code == 202, queued.text
        body = await settled_statement(second, "c-settle", settled_tab["tab_id"])
        assert (body["outcome"], body["captured_minor"]) == ("captured", 1_500)
        assert "no hold" not in second.log()
    finally:
        second.stop()
