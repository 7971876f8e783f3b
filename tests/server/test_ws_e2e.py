"""End to end: the SDK against real tipmeter processes (A and B) on one real Redis."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from clients.errors import HandshakeRefused, Refused
from clients.protocol import Codec, RoomEvent, TabUpdate
from clients.sdk import Client
from clients.tickets import Role
from metering import keys
from tests.server.conftest import api, next_of, open_tab, read_tab
from tests.support.processes import TipmeterProcess, ticket
from tests.support.proxy import Proxy
from tests.support.waiting import eventually

Pair = tuple[TipmeterProcess, TipmeterProcess]


def viewer_ticket(customer: str, name: str = "") -> str:
    return ticket(Role.VIEWER, customer, currency="USD", name=name)


async def test_a_tip_on_one_process_reaches_a_model_on_the_other(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "bob", cap_minor=10_000)
    async with Client(b.ws_url, ticket(Role.MODEL, "alice"), codec=Codec.JSON) as model:
        assert model.welcome is not None
        assert model.welcome.earnings == {}
        await model.subscribe("alice")
        async with Client(a.ws_url, viewer_ticket("bob", "Bob")) as viewer:
            assert viewer.tab is not None
            assert viewer.tab.remaining_minor == 10_000
            result = await viewer.tip("alice", 250, "USD", message="hello")
            assert result.status == "applied"
            assert result.tab is not None
            assert result.tab.accrued_minor == 250
            event = await next_of(model, RoomEvent)
    assert (event.room, event.event) == ("alice", "tip")
    assert event.data["amount_minor"] == 250
    assert event.data["name"] == "Bob"
    assert event.data["message"] == "hello"
    assert event.data["share_minor"] == 150  # 60 % to the model, for her eyes only
    assert event.data["earned_total_minor"] == 150


async def test_viewers_do_not_see_the_models_share(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "bob")
    async with Client(b.ws_url, viewer_ticket("carol")) as watcher:
        await watcher.subscribe("alice")
        async with Client(a.ws_url, viewer_ticket("bob", "Bob")) as viewer:
            await viewer.tip("alice", 100, "USD", anonymous=True)
        event = await next_of(watcher, RoomEvent)
    assert "share_minor" not in event.data
    assert "earned_total_minor" not in event.data
    assert (event.data["anonymous"], event.data["name"]) == (True, "")


async def test_three_devices_of_one_customer_race_the_cap_across_both_processes(
    servers: Pair,
) -> None:
    a, b = servers
    fits, amount, per_device = 150, 100, 100
    tab = await open_tab(a, "dave", cap_minor=fits * amount)
    clients = [Client(s.ws_url, viewer_ticket("dave")) for s in (a, b, a)]
    for client in clients:
        await client.connect()

    async def send(client: Client, n: int) -> str:
        try:
            await client.tip("alice", amount, "USD", tip_id=f"{id(client)}-{n}")
        except Refused as refused:
            return refused.code
        return "applied"

    try:
        outcomes = await asyncio.gather(*(send(c, n) for c in clients for n in range(per_device)))
    finally:
        for client in clients:
            await client.close()
    assert Counter(outcomes) == {"applied": fits, "over_cap": 3 * per_device - fits}
    final = await read_tab(a, "dave", tab["tab_id"])
    assert final["accrued_minor"] == final["cap_minor"] == fits * amount
    assert len(final["lines"]) == fits


async def test_a_tip_whose_answer_was_lost_is_applied_once(servers: Pair) -> None:
    a, _ = servers
    tab = await open_tab(a, "erin")

    async def fresh_ticket() -> str:
        return viewer_ticket("erin")

    async with Proxy(a.port) as proxy:
        client = Client(f"ws://127.0.0.1:{proxy.port}/ws", fresh_ticket)
        await client.connect()
        try:
            proxy.swallow_downstream = True  # the tip reaches the server; its answer is lost
            pending = asyncio.create_task(client.tip("alice", 300, "USD", tip_id="lost-answer"))

            async def applied() -> bool:
                return bool((await read_tab(a, "erin", tab["tab_id"]))["accrued_minor"] == 300)

            await eventually(applied)
            # The tip's answer may still be on its way to the proxy.
            await eventually(lambda: proxy.downstream_bytes_dropped > 0)
            proxy.swallow_downstream = False
            proxy.cut()  # the connection dies; the SDK reconnects and sends the tip again
            result = await asyncio.wait_for(pending, 15)
        finally:
            await client.close()
    assert result.status == "duplicate"
    assert client.stats.reconnects >= 1
    assert client.stats.resent >= 1
    final = await read_tab(a, "erin", tab["tab_id"])
    assert final["accrued_minor"] == 300
    assert [line["line_id"] for line in final["lines"]] == ["tip:lost-answer"]


async def test_events_resume_after_a_reconnect_without_gaps_or_repeats(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "fay", cap_minor=100_000)
    async with Client(a.ws_url, viewer_ticket("fay")) as viewer:
        async with Client(b.ws_url, ticket(Role.MODEL, "alice")) as model:
            await model.subscribe("alice")
            for n in range(3):
                await viewer.tip("alice", 10 + n, "USD")
            seen = [(await next_of(model, RoomEvent)).data["amount_minor"] for _ in range(3)]
            cursor = model.cursors["alice"]
        assert seen == [10, 11, 12]
        for n in range(3, 6):
            await viewer.tip("alice", 10 + n, "USD")  # while the model is away
    async with Client(b.ws_url, ticket(Role.MODEL, "alice")) as model:
        subscribed = await model.subscribe("alice", after=cursor)
        assert not subscribed.gap
        resumed = [(await next_of(model, RoomEvent)).data["amount_minor"] for _ in range(3)]
        assert resumed == [13, 14, 15]
        assert await model.next_message(0.3) is None


async def test_a_viewer_sees_its_tab_change_from_another_device_and_from_the_api(
    servers: Pair,
) -> None:
    a, b = servers
    tab = await open_tab(a, "gus", cap_minor=1_000)
    async with (
        Client(b.ws_url, viewer_ticket("gus")) as watching,
        Client(a.ws_url, viewer_ticket("gus")) as paying,
    ):
        await paying.tip("alice", 400, "USD")
        update = await next_of(watching, TabUpdate)
        assert (update.tab.accrued_minor, update.tab.remaining_minor) == (400, 600)
        async with api(a) as http:
            raised = await http.post(
                f"/v1/customers/gus/tabs/{tab['tab_id']}/cap", json={"cap_minor": 3_000}
            )
        assert raised.status_code == 200, raised.text
        update = await next_of(watching, TabUpdate)
        assert (update.tab.cap_minor, update.tab.remaining_minor) == (3_000, 2_600)
        async with api(b) as http:
            settled = await http.post(f"/v1/customers/gus/tabs/{tab['tab_id']}/settle")
        assert settled.status_code == 202
        update = await next_of(watching, TabUpdate)
        assert update.tab.state == "settling"
        with pytest.raises(Refused) as refused:
            await paying.tip("alice", 1, "USD")
        assert refused.value.code == "tab_not_open"


async def test_devices_are_counted_so_a_second_device_hears_the_first(
    servers: Pair, redis_url: str
) -> None:
    a, _ = servers
    await open_tab(a, "hank", cap_minor=1_000)
    counts = redis.asyncio.Redis.from_url(redis_url)
    devices = keys.customer_devices("hank")
    try:
        async with Client(a.ws_url, viewer_ticket("hank")) as paying:
            [only] = (await counts.hgetall(devices)).values()
            assert only == b"1"  # one device: its tips are not announced
            await paying.tip("alice", 100, "USD")
            async with Client(a.ws_url, viewer_ticket("hank")) as joining:
                [both] = (await counts.hgetall(devices)).values()
                assert both == b"2"
                await paying.tip("alice", 150, "USD")
                update = await next_of(joining, TabUpdate)
                assert update.tab.accrued_minor == 250

            async def one_device() -> bool:
                return list((await counts.hgetall(devices)).values()) == [b"1"]

            # The count drops in the background once a device leaves.
            await eventually(one_device)

        async def no_devices() -> bool:
            return not await counts.exists(devices)

        await eventually(no_devices)
    finally:
        await counts.aclose()


async def test_over_the_cap_is_refused_with_the_balance(servers: Pair) -> None:
    a, _ = servers
    await open_tab(a, "hal", cap_minor=500)
    async with Client(a.ws_url, viewer_ticket("hal")) as viewer:
        with pytest.raises(Refused) as refused:
            await viewer.tip("alice", 501, "USD")
    assert refused.value.code == "over_cap"
    assert refused.value.tab is not None
    assert refused.value.tab.remaining_minor == 500


async def test_tickets_expired_forged_reused_and_origins_are_refused(servers: Pair) -> None:
    a, _ = servers
    expired = ticket(Role.VIEWER, "ivy", currency="USD", ttl_ms=1, now_ms=1_000)
    good = viewer_ticket("ivy")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    cases = [
        (expired, None, 401, "ticket_expired"),
        (forged, None, 401, "ticket_bad_signature"),
        ("", None, 401, "ticket_missing"),
        (good, "https://evil.example", 403, "origin_not_allowed"),
    ]
    for value, origin, status, code in cases:
        with pytest.raises(HandshakeRefused) as refused:
            await Client(a.ws_url, value, origin=origin, reconnect=False).connect()
        assert (refused.value.status, refused.value.code) == (status, code)
    first = Client(a.ws_url, good, origin=a.base_url)
    await first.connect()
    await first.close()
    with pytest.raises(HandshakeRefused) as refused:
        await Client(a.ws_url, good).connect()
    assert (refused.value.status, refused.value.code) == (401, "ticket_reused")


async def test_unknown_subprotocols_are_refused(servers: Pair) -> None:
    a, _ = servers
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{a.ws_url}?ticket={viewer_ticket('ivy')}",
            subprotocols=[Subprotocol("tipmeter.v9.json")],
        ):
            pass
    assert refused.value.response.status_code == 400


async def test_bad_frames_are_refused_and_change_nothing_in_redis(servers: Pair) -> None:
    from metering.meter import open_store
    from metering.store import RedisTarget
    from tests.metering.snapshot import snapshot

    a, _ = servers
    await open_tab(a, "jon", cap_minor=1_000)
    store = await open_store(RedisTarget(url=a.env["TIPMETER_REDIS_URL"]))
    try:
        async with connect(
            f"{a.ws_url}?ticket={viewer_ticket('jon')}",
            subprotocols=[Subprotocol("tipmeter.v1.json")],
        ) as ws:
            await ws.recv()  # welcome
            # The in-process settlement worker makes its queue when it starts: not the frames'
            # doing, so the pictures are taken once it has.
            await eventually(lambda: store.client.exists(keys.settle_queue()))
            before = await snapshot(store)
            for frame in [
                '{"type":"tip","id":"f1","room":"alice","amount_minor":2.5,"currency":"USD"}',
                '{"type":"tip","id":"f2","room":"alice","amount_minor":"250","currency":"USD"}',
                '{"type":"tip","id":"f3","room":"alice","amount_minor":true,"currency":"USD"}',
                '{"type":"tip","id":"f4","room":"alice","amount_minor":-5,"currency":"USD"}',
                '{"type":"tip","id":"f5","room":"alice","amount_minor":100,"currency":"EUR"}',
                '{"type":"tip","id":"f6","room":"alice","amount_minor":1001,"currency":"USD"}',
                "{not json",
            ]:
                await ws.send(frame)
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error", reply
            # The in-process settlement worker's sweeper reschedules the tab index on its own
            # (when it next looks at each tab), and the servers record their heartbeats: that
            # is not the frames' doing.
            after = await snapshot(store)
            assert _without_background(after) == _without_background(before)
            await ws.send("x" * 5_000)  # over TIPMETER_FRAME_BYTES_MAX
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
    finally:
        await store.close()


def _own_server(tmp_path: object, redis_url: str, **settings: str) -> TipmeterProcess:
    """A server process of the test's own on ``redis_url``, with ``settings`` (names without
    their ``TIPMETER_`` prefix), started."""
    env = {"TIPMETER_REDIS_URL": redis_url, **{f"TIPMETER_{k}": v for k, v in settings.items()}}
    return TipmeterProcess(["serve"], env, cwd=Path(str(tmp_path))).start()


async def test_tips_beyond_the_rate_limit_are_refused_with_a_wait(
    tmp_path: object, redis_url: str
) -> None:
    server = _own_server(tmp_path, redis_url, TIPS_PER_S_MAX="2", TIPS_BURST_MAX="3")
    try:
        await open_tab(server, "kim")
        async with connect(
            f"{server.ws_url}?ticket={viewer_ticket('kim')}",
            subprotocols=[Subprotocol("tipmeter.v1.json")],
        ) as ws:
            await ws.recv()
            replies = []
            for n in range(5):
                await ws.send(
                    json.dumps(
                        {
                            "type": "tip",
                            "id": f"r{n}",
                            "room": "alice",
                            "amount_minor": 5,
                            "currency": "USD",
                        }
                    )
                )
                replies.append(json.loads(await ws.recv()))
        kinds = [(r["type"], r.get("code")) for r in replies]
        assert kinds[:3] == [("result", None)] * 3
        assert kinds[3:] == [("error", "rate_limited")] * 2
        assert all(r["retry_after_ms"] > 0 for r in replies[3:])
    finally:
        server.stop()


async def test_sigterm_drains_clients_then_exits(tmp_path: object, redis_url: str) -> None:
    import signal
    import time

    import httpx

    from clients.protocol import Drain

    server = _own_server(tmp_path, redis_url, DRAIN_DELAY_S="1", DRAIN_S_MAX="10")
    try:
        client = Client(server.ws_url, viewer_ticket("lou"), reconnect=False)
        await client.connect()
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        async with httpx.AsyncClient() as http:

            async def draining() -> bool:
                ready = await http.get(f"{server.base_url}/readyz")
                return (ready.status_code, ready.json()) == (503, {"status": "draining"})

            await eventually(draining, timeout_s=5)
        drain = await next_of(client, Drain, timeout_s=5)
        assert 0 <= drain.reconnect_after_ms < 5_000
        assert await asyncio.to_thread(server.wait, 10) == 0
        assert time.monotonic() - started < 10
        await client.close()
    finally:
        server.stop()


async def test_logs_never_contain_tickets_or_api_keys(servers: Pair) -> None:
    from tests.support.processes import API_KEY, TICKET_SECRET

    a, b = servers
    value = viewer_ticket("max")
    await open_tab(a, "max")
    async with Client(a.ws_url, value) as viewer:
        await viewer.tip("alice", 5, "USD")
    with pytest.raises(HandshakeRefused):
        await Client(a.ws_url, value, reconnect=False).connect()  # reused: refused and logged?
    for server in (a, b):
        log = server.log()
        for secret in (value, value.split(".")[1], API_KEY, TICKET_SECRET):
            assert secret not in log


async def test_metrics_count_what_happened(servers: Pair) -> None:
    import httpx

    a, _ = servers
    await open_tab(a, "ned")
    async with Client(a.ws_url, viewer_ticket("ned")) as viewer:
        await viewer.tip("alice", 7, "USD")
        with pytest.raises(Refused):
            await viewer.tip("alice", 10**6, "USD")
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{a.base_url}/metrics")).text
    assert 'tipmeter_tips_total{outcome="applied"}' in text
    assert 'tipmeter_errors_total{code="amount_out_of_range"}' in text
    assert 'tipmeter_tipped_minor_total{currency="USD"}' in text
    assert 'tipmeter_redis_seconds_bucket{le="0.005",operation="apply_tips"}' in text
    assert 'tipmeter_connections{role="viewer"}' in text


def _without_background(
    snapshot: dict[bytes, tuple[bytes, int]],
) -> dict[bytes, tuple[bytes, int]]:
    """A Redis snapshot without what the servers change on their own, whatever clients send:
    the sweeper's tab index (``tm:{ix:N}:tabs``) and the billing processes' heartbeats."""
    beats = keys.owners().encode()
    return {k: v for k, v in snapshot.items() if b":{ix:" not in k and k != beats}
