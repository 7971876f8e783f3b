"""Metered sessions end to end, in real time: real processes, real seconds, real Redis."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from clients.errors import Refused
from clients.protocol import Codec, RateView, SessionUpdate, TabUpdate, Warning
from clients.sdk import Client
from clients.tickets import Role
from metering.meter import open_store
from metering.store import RedisTarget
from tests.server.conftest import api, next_of, open_tab, read_tab
from tests.support.processes import TipmeterProcess, ticket
from tests.support.proxy import Proxy
from tests.support.waiting import eventually

Pair = tuple[TipmeterProcess, TipmeterProcess]


def viewer(server: TipmeterProcess, customer: str) -> Client:
    return Client(server.ws_url, ticket(Role.VIEWER, customer, currency="USD", name=customer))


def model(server: TipmeterProcess, room: str = "alice") -> Client:
    return Client(server.ws_url, ticket(Role.MODEL, room), codec=Codec.JSON)


async def set_rates(client: Client, private: int, minimum_s: int = 0) -> None:
    await client.set_rates({"private": RateView(private, minimum_s)})


async def session_of(
    server: TipmeterProcess, customer: str, session_id: str
) -> dict[str, int | str]:
    store = await open_store(RedisTarget(url=server.env["TIPMETER_REDIS_URL"]))
    try:
        from metering.meter import Meter

        view = await Meter(store).sessions.read(customer, session_id)
    finally:
        await store.close()
    assert view is not None
    return {
        "billed": view.billed_s,
        "amount": view.amount_minor,
        "state": view.state,
        "reason": view.reason,
        "started": view.started_at_ms,
    }


async def billed_at_least(server: TipmeterProcess, customer: str, session_id: str, s: int) -> bool:
    """Whether the session has been billed ``s`` seconds (or more) by now."""
    return int((await session_of(server, customer, session_id))["billed"]) >= s


async def has_ended(server: TipmeterProcess, customer: str, session_id: str) -> bool:
    """Whether the session has ended."""
    return (await session_of(server, customer, session_id))["state"] == "ended"


async def test_billed_seconds_follow_elapsed_seconds(servers: Pair) -> None:
    a, b = servers
    tab = await open_tab(a, "sam", cap_minor=100_000)
    async with model(b) as alice, viewer(a, "sam") as sam:
        await set_rates(alice, 600)
        started = await sam.start_session("alice", "private", session_id="show-1")
        assert started.session is not None
        assert started.session.state == "running"
        update = await next_of(sam, TabUpdate, timeout_s=3)
        assert update.tab.burn_minor_per_minute == 600
        assert update.tab.seconds_left is not None
        assert update.tab.seconds_left > 9_000
        await eventually(lambda: billed_at_least(a, "sam", "show-1", 4))
        state = await session_of(a, "sam", "show-1")
        elapsed = time.time() - int(state["started"]) / 1000  # the server's clock is this one
        # Prepaid through the current second: elapsed whole seconds + 1, within one tick, and
        # never ahead of the time delivered (a busy machine's ticks may lag, never lead).
        assert int(state["billed"]) <= int(elapsed) + 2, (state, elapsed)
        assert state["amount"] == int(state["billed"]) * 10
        stopped = await sam.stop_session("show-1")
        assert stopped.session is not None
        assert stopped.session.end_reason == "stopped"
    final = await read_tab(a, "sam", tab["tab_id"])
    [line] = final["lines"]
    assert (line["kind"], line["rate_per_minute_minor"]) == ("session", 600)
    assert final["accrued_minor"] == line["amount_minor"] == line["seconds"] * 10


async def start_show(client: Client, session_id: str, room: str = "alice") -> None:
    await client.start_session(room, "private", session_id=session_id)


async def test_a_show_with_an_offline_model_is_refused(servers: Pair) -> None:
    a, _ = servers
    await open_tab(a, "tom")
    async with viewer(a, "tom") as tom:
        with pytest.raises(Refused) as refused:
            await start_show(tom, "show-2", room="nobody-home")
    assert refused.value.code == "model_offline"


async def test_a_minimum_that_does_not_fit_says_what_is_needed(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "uma", cap_minor=1_000)
    async with model(b) as alice, viewer(a, "uma") as uma:
        await set_rates(alice, 600, minimum_s=300)
        with pytest.raises(Refused) as refused:
            await start_show(uma, "show-3")
    assert refused.value.code == "insufficient_cap"


async def test_the_show_runs_to_the_cap_with_warnings(servers: Pair) -> None:
    a, b = servers
    tab = await open_tab(a, "vic", cap_minor=400)  # 6000 a minute = 100 a second: four seconds
    async with model(b) as alice, viewer(a, "vic") as vic:
        await set_rates(alice, 6_000)
        await start_show(vic, "show-4")
        warning = await next_of(vic, Warning, timeout_s=3)
        assert warning.threshold_s == 10
        ended = await next_of(vic, SessionUpdate, timeout_s=8)
    assert (ended.session.state, ended.session.end_reason) == ("ended", "cap_reached")
    assert (ended.session.seconds, ended.session.amount_minor) == (4, 400)
    final = await read_tab(a, "vic", tab["tab_id"])
    assert final["accrued_minor"] == final["cap_minor"] == 400


async def test_leaving_ends_the_show_and_billing_stops(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "wes", cap_minor=100_000)
    async with model(b) as alice:
        await set_rates(alice, 600)
        async with viewer(a, "wes") as wes:
            await start_show(wes, "show-5")
            await eventually(lambda: billed_at_least(a, "wes", "show-5", 2))
        await eventually(lambda: has_ended(a, "wes", "show-5"))
        left = await session_of(a, "wes", "show-5")
        assert (left["state"], left["reason"]) == ("ended", "viewer_left")
        # An observation window, not a wait for something: two ticks in which nothing may bill.
        await asyncio.sleep(2)
        assert (await session_of(a, "wes", "show-5"))["billed"] == left["billed"]


async def test_the_model_leaving_ends_her_shows(servers: Pair) -> None:
    a, b = servers
    await open_tab(a, "xia", cap_minor=100_000)
    async with viewer(a, "xia") as xia:
        async with model(b) as alice:
            await set_rates(alice, 600)
            await start_show(xia, "show-6")
        ended = await next_of(xia, SessionUpdate, timeout_s=5)
    assert ended.session.end_reason == "model_left"


async def test_settling_the_tab_ends_its_shows(servers: Pair) -> None:
    a, b = servers
    tab = await open_tab(a, "yan", cap_minor=100_000)
    async with model(b) as alice, viewer(a, "yan") as yan:
        await set_rates(alice, 600)
        await start_show(yan, "show-7")
        async with api(b) as http:
            assert (
                await http.post(f"/v1/customers/yan/tabs/{tab['tab_id']}/settle")
            ).status_code == 202
        ended = await next_of(yan, SessionUpdate, timeout_s=4)
    assert ended.session.end_reason == "settling"


async def test_a_killed_owner_is_reaped_within_the_bound(servers: Pair, tmp_path: Path) -> None:
    a, b = servers
    await open_tab(a, "zed", cap_minor=100_000)
    doomed = TipmeterProcess(
        ["serve"], {"TIPMETER_REDIS_URL": a.env["TIPMETER_REDIS_URL"]}, cwd=tmp_path
    ).start()
    try:
        async with model(b) as alice:
            await set_rates(alice, 600)
            client = viewer(doomed, "zed")
            client.reconnect = False
            await client.connect()
            await start_show(client, "show-8")
            await eventually(lambda: billed_at_least(a, "zed", "show-8", 2))
            doomed.signal(signal.SIGKILL)
            killed_at = time.time() * 1000
            doomed.wait(5)
            await eventually(lambda: has_ended(a, "zed", "show-8"), timeout_s=8)
            ended_after_s = time.time() - killed_at / 1000
            state = await session_of(a, "zed", "show-8")
            await client.close()
        assert (state["state"], state["reason"]) == ("ended", "owner_lost")
        assert ended_after_s <= 5.5, ended_after_s  # lease 3 s + a tick + the reaper's pass
        # Nothing was billed after the kill: at most the second in progress, prepaid.
        billed_through_ms = int(state["started"]) + 1000 * int(state["billed"])
        assert billed_through_ms <= killed_at + 1_500
    finally:
        doomed.stop()


async def test_a_viewer_that_vanishes_without_a_close_stops_paying_within_the_bound(
    servers: Pair,
) -> None:
    """docs/sessions.md: a connection funding a show that stops answering pings (here: a proxy
    that stops forwarding the server's bytes, so no ping arrives and no pong comes back) is
    dropped, and the show ended ``viewer_left``, within the show liveness bound (5 s)."""
    a, b = servers
    await open_tab(a, "vanya", cap_minor=100_000)
    async with model(b) as alice, Proxy(a.port) as proxy:
        await set_rates(alice, 600)
        client = Client(
            f"ws://127.0.0.1:{proxy.port}/ws",
            ticket(Role.VIEWER, "vanya", currency="USD", name="vanya"),
        )
        client.reconnect = False
        await client.connect()
        try:
            await start_show(client, "show-vanish")
            await next_of(client, TabUpdate, timeout_s=3)
            proxy.swallow_downstream = True
            vanished = time.monotonic()
            await eventually(lambda: has_ended(a, "vanya", "show-vanish"), timeout_s=15)
            ended_after_s = time.monotonic() - vanished
            state = await session_of(a, "vanya", "show-vanish")
        finally:
            await client.close()
    assert (state["state"], state["reason"]) == ("ended", "viewer_left")
    assert ended_after_s < 6.5, f"billed for {ended_after_s:.1f} s after the viewer vanished"


async def test_after_a_reconnect_the_viewer_reads_how_its_show_ended(servers: Pair) -> None:
    """The end message went to a connection that is gone: on a new connection, session_stop
    with the show's id answers how it ended (and stops it if it still runs)."""
    a, b = servers
    await open_tab(a, "vera", cap_minor=100_000)
    async with model(b) as alice:
        await set_rates(alice, 600)
        async with viewer(a, "vera") as first:
            await first.start_session("alice", "private", session_id="show-gone")
            stopped = await alice.stop_session("show-gone")  # the model ends it meanwhile
            assert stopped.session is not None
        async with viewer(b, "vera") as second:
            answer = await second.stop_session("show-gone")
            assert answer.status == "duplicate"
            assert answer.session is not None
            assert (answer.session.state, answer.session.end_reason) == ("ended", "stopped")
            # A show still running on another device is stopped from this one.
            async with viewer(a, "vera") as other_device:
                await other_device.start_session("alice", "private", session_id="show-two")
                ended = await second.stop_session("show-two")
            assert ended.status == "applied"
            assert ended.session is not None
            assert ended.session.end_reason == "stopped"
            with pytest.raises(Refused) as refused:
                await second.stop_session("no-such-show")
            assert refused.value.code == "session_not_found"


async def test_a_model_whose_console_vanishes_ends_her_shows_within_the_bound(
    servers: Pair,
) -> None:
    """A model console is watched as closely as a viewer funding a show: one that stops
    answering pings (a proxy that stops forwarding) is dropped, and her shows end
    ``model_left``, within the same bound."""
    a, b = servers
    await open_tab(a, "mira", cap_minor=100_000)
    async with Proxy(b.port) as proxy:
        console = Client(f"ws://127.0.0.1:{proxy.port}/ws", ticket(Role.MODEL, "vanishing"))
        console.reconnect = False
        await console.connect()
        try:
            await set_rates(console, 600)
            async with viewer(a, "mira") as mira:
                await start_show(mira, "show-model-vanish", room="vanishing")
                proxy.swallow_downstream = True
                vanished = time.monotonic()
                ended = await next_of(mira, SessionUpdate, timeout_s=15)
                ended_after_s = time.monotonic() - vanished
        finally:
            await console.close()
    assert ended.session.end_reason == "model_left"
    assert ended_after_s < 6.5, f"billed for {ended_after_s:.1f} s after the model vanished"
