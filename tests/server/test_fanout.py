"""Fan-out under failure: pub/sub connections die, events still arrive once, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from clients.protocol import RoomEvent
from clients.sdk import Client
from clients.sync import SyncClient
from clients.tickets import Role
from metering.meter import Meter, open_store
from metering.outcomes import Code, TabRef
from metering.store import RedisTarget
from metering.tips import TipRequest
from tests.server.conftest import next_of, open_tab
from tests.support.processes import TipmeterProcess, ticket

Pair = tuple[TipmeterProcess, TipmeterProcess]


async def test_events_missed_while_pubsub_reconnects_are_caught_up(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "pat", cap_minor=100_000)
    redis_url = a.env["TIPMETER_REDIS_URL"]
    async with (
        Client(b.ws_url, ticket(Role.MODEL, "alice")) as model,
        Client(a.ws_url, ticket(Role.VIEWER, "pat", currency="USD")) as viewer,
    ):
        await model.subscribe("alice")
        await viewer.tip("alice", 1, "USD")
        assert (await next_of(model, RoomEvent)).data["amount_minor"] == 1
        admin = aioredis.Redis.from_url(redis_url)
        try:
            killed = await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        assert killed >= 1
        # Tips land while the listeners reconnect: their announcements are lost on the wire.
        for amount in range(2, 12):
            await viewer.tip("alice", amount, "USD")
        amounts = [
            (await next_of(model, RoomEvent, timeout_s=10)).data["amount_minor"] for _ in range(10)
        ]
        assert amounts == list(range(2, 12))
        assert await model.next_message(0.5) is None  # and nothing twice


def test_the_sync_facade_tips_and_follows(servers: Pair) -> None:
    a, b = servers
    asyncio.run(open_tab(a, "quinn"))
    with SyncClient(b.ws_url, ticket(Role.MODEL, "alice")) as model:
        model.subscribe("alice")
        with SyncClient(a.ws_url, ticket(Role.VIEWER, "quinn", currency="USD")) as viewer:
            assert viewer.welcome is not None
            assert viewer.welcome.tab is not None
            result = viewer.tip("alice", 75, "USD", tip_id="sync-1")
            assert (result.status, result.tab and result.tab.accrued_minor) == ("applied", 75)
            assert viewer.tip("alice", 75, "USD", tip_id="sync-1").status == "duplicate"
        message = model.next_message(5)
        while message is not None and not isinstance(message, RoomEvent):
            message = model.next_message(5)
        assert isinstance(message, RoomEvent)
        assert message.data["amount_minor"] == 75
        assert model.ping().id.startswith("ping-")


@pytest.mark.slow
async def test_two_processes_on_a_redis_cluster(
    cluster_nodes: tuple[str, ...], tmp_path: Path
) -> None:
    env = {"TIPMETER_REDIS_CLUSTER_NODES": ",".join(cluster_nodes)}
    a = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    b = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:
        tabs = [await open_tab(a, f"cl{n}", cap_minor=1_000) for n in range(6)]
        async with Client(b.ws_url, ticket(Role.MODEL, "alice")) as model:
            await model.subscribe("alice")
            for n, tab in enumerate(tabs):
                async with Client(
                    a.ws_url, ticket(Role.VIEWER, f"cl{n}", currency="USD")
                ) as viewer:
                    assert viewer.tab is not None
                    assert viewer.tab.tab_id == tab["tab_id"]
                    result = await viewer.tip("alice", 100 + n, "USD")
                    assert result.status == "applied"
            amounts = [(await next_of(model, RoomEvent)).data["amount_minor"] for _ in tabs]
        assert sorted(amounts) == [100 + n for n in range(6)]
    finally:
        a.stop()
        b.stop()


async def test_a_backlog_longer_than_the_send_queue_arrives_whole(servers: Pair) -> None:
    """600 events behind (more than the 256-frame send queue): the backlog arrives in order,
    all of it, before the live events, and the client is never dropped as a slow consumer."""
    a, b = servers
    await open_tab(a, "rita", cap_minor=1_000_000)
    async with Client(a.ws_url, ticket(Role.VIEWER, "rita", currency="USD")) as viewer:
        results = await asyncio.gather(
            *(viewer.tip("alice", 1, "USD", tip_id=f"back-{n}") for n in range(600))
        )
        assert {r.status for r in results} == {"applied"}
        async with Client(b.ws_url, ticket(Role.MODEL, "alice")) as model:
            # From the room's start: "0-0" is before every event id.
            subscribed = await model.subscribe("alice", after="0-0")
            assert not subscribed.gap
            await viewer.tip("alice", 2, "USD", tip_id="back-live")
            tip_ids = [
                (await next_of(model, RoomEvent, timeout_s=10)).data["tip_id"] for _ in range(601)
            ]
            assert model.stats.reconnects == 0
    assert sorted(tip_ids[:600]) == sorted(f"back-{n}" for n in range(600))
    assert len(set(tip_ids)) == 601
    assert tip_ids[-1] == "back-live"


async def test_an_event_left_in_the_outbox_is_relayed_by_the_servers(
    servers: Pair, redis_url: str
) -> None:
    """A tip applied whose answer was lost (its relay too) is retried and answered duplicate:
    its room event, left in the customer's outbox, reaches the room with no worker running."""
    a, b = servers
    tab = await open_tab(a, "sam", cap_minor=10_000)
    store = await open_store(RedisTarget(url=redis_url))
    meter = Meter(store, coalesce=False)
    try:
        first = await meter.tips.apply(
            TabRef("sam", tab["tab_id"]),
            TipRequest(tip_id="lost-1", room="alice", amount_minor=300, currency="USD"),
        )
        assert first.code is Code.APPLIED  # and never relayed: the process "died" here
    finally:
        await meter.aclose()
        await store.close()
    async with (
        Client(b.ws_url, ticket(Role.MODEL, "alice")) as model,
        Client(a.ws_url, ticket(Role.VIEWER, "sam", currency="USD")) as viewer,
    ):
        await model.subscribe("alice")
        retried = await viewer.tip("alice", 300, "USD", tip_id="lost-1")
        assert retried.status == "duplicate"
        event = await next_of(model, RoomEvent, timeout_s=10)
    assert (event.data["tip_id"], event.data["amount_minor"]) == ("lost-1", 300)
