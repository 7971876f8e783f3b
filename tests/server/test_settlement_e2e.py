"""Settlement as a user of the server sees it: a real server process with its settlement worker
inside (``TIPMETER_WORKER=on``, the sandbox gateway shared by the API's holds and the worker's
captures), on a Redis of its own so no other test's tabs are settled here."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis.asyncio

from clients.protocol import RateView, TabUpdate
from clients.sdk import Client
from clients.tickets import Role
from metering import keys
from tests.server.conftest import api, next_of, open_tab, settled_statement
from tests.support.processes import TipmeterProcess, serving, ticket
from tests.support.waiting import eventually

#: The viewer has this long to raise an exhausted cap before the tab settles.
CAP_GRACE_MS = 500


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TipmeterProcess]:
    env = {"TIPMETER_SETTLE_CAP_GRACE_MS": str(CAP_GRACE_MS)}
    with serving(tmp_path_factory, "settle", env) as process:
        yield process


async def test_settle_now_captures_once_and_support_finds_the_payment(
    server: TipmeterProcess,
) -> None:
    tab = await open_tab(server, "c-settle", cap_minor=5_000)
    async with Client(server.ws_url, ticket(Role.VIEWER, "c-settle", currency="USD")) as viewer:
        await viewer.tip("alice", 700, "USD")
        await viewer.tip("bella", 300, "USD")
        async with api(server) as http:
            queued = await http.post(f"/v1/customers/c-settle/tabs/{tab['tab_id']}/settle")
        assert queued.status_code == 202, queued.text
        # The viewer's devices hear the outcome (record_settlement announces it).
        update: TabUpdate = await next_of(
            viewer, TabUpdate, timeout_s=15, where=lambda m: m.tab.state == "settled"
        )
        assert (update.tab.state, update.tab.accrued_minor) == ("settled", 1_000)

    body = await settled_statement(server, "c-settle", tab["tab_id"])
    assert body["outcome"] == "captured"
    assert body["freeze_reason"] == "merchant"
    assert body["captured_minor"] == body["total_minor"] == 1_000
    assert body["capture_id"]
    assert sum(group["amount_minor"] for group in body["groups"]) == 1_000
    assert body["platform_minor"] + sum(s["share_minor"] for s in body["model_shares"]) == 1_000

    async with api(server) as http:
        found = await http.get(f"/v1/captures/{body['capture_id']}")
        unknown = await http.get("/v1/captures/cap_unknown")
    assert found.status_code == 200, found.text
    assert found.json() == body
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "capture_not_found"


async def _swept_once(server: TipmeterProcess, customer: str, tab_id: str) -> None:
    """Wait until the sweeper has looked at the new tab once: a tab opens due at once in the
    sweeper's index, and a look moves its next look to the future."""
    index = keys.tab_index(keys.tab_index_shard(customer))
    member = keys.tab_index_member(customer, tab_id)
    client = redis.asyncio.Redis.from_url(server.env["TIPMETER_REDIS_URL"])
    try:

        async def looked_at() -> bool:
            score = await client.zscore(index, member)
            return score is not None and score > time.time() * 1000

        await eventually(looked_at, what="the sweeper looks at the new tab")
    finally:
        await client.aclose()


async def test_a_tip_that_exhausts_the_cap_settles_the_tab_after_the_grace(
    server: TipmeterProcess,
) -> None:
    # The sweeper (every second) looks at a new tab once and schedules its next look for the
    # earliest trigger it knows then — minutes away. Only the server's hint brings the look
    # forward to the end of the grace: settling within seconds proves the hint.
    tab = await open_tab(server, "c-exhaust", cap_minor=1_000)
    await _swept_once(server, "c-exhaust", tab["tab_id"])
    async with Client(server.ws_url, ticket(Role.VIEWER, "c-exhaust", currency="USD")) as viewer:
        result = await viewer.tip("alice", 1_000, "USD")
        assert result.status == "applied"
    started = time.monotonic()
    body = await settled_statement(server, "c-exhaust", tab["tab_id"])
    assert time.monotonic() - started >= CAP_GRACE_MS / 1_000 - 0.2
    assert (body["freeze_reason"], body["outcome"]) == ("cap_reached", "captured")
    assert body["captured_minor"] == 1_000


async def test_a_show_that_runs_the_cap_out_settles_the_tab(server: TipmeterProcess) -> None:
    tab = await open_tab(server, "c-show", cap_minor=300)
    async with Client(server.ws_url, ticket(Role.MODEL, "mia")) as model:
        await model.set_rates({"private": RateView(6_000)})  # 100 a second: 3 s of show
        async with Client(server.ws_url, ticket(Role.VIEWER, "c-show", currency="USD")) as viewer:
            await viewer.start_session("mia", "private", session_id="show-1")
            body = await settled_statement(server, "c-show", tab["tab_id"])
    assert (body["freeze_reason"], body["outcome"]) == ("cap_reached", "captured")
    assert body["captured_minor"] == 300
    [group] = body["groups"]
    assert (group["kind"], group["seconds"], group["amount_minor"]) == ("session", 3, 300)


async def test_a_declined_capture_fails_the_tab_and_captures_nothing(
    server: TipmeterProcess,
) -> None:
    tab = await open_tab(
        server, "c-decline", cap_minor=2_000, card="tok_capture_decline_insufficient_funds"
    )
    async with Client(server.ws_url, ticket(Role.VIEWER, "c-decline", currency="USD")) as viewer:
        await viewer.tip("alice", 400, "USD")
    async with api(server) as http:
        queued = await http.post(f"/v1/customers/c-decline/tabs/{tab['tab_id']}/settle")
    assert queued.status_code == 202
    body = await settled_statement(server, "c-decline", tab["tab_id"])
    assert (body["state"], body["outcome"]) == ("failed", "declined")
    assert body["decline_reason"] == "insufficient_funds"
    assert (body["total_minor"], body["captured_minor"], body["capture_id"]) == (400, 0, "")
