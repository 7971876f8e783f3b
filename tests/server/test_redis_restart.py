"""Followers through a real redis-server restart under load: no event missed or repeated.

While tips flow into four rooms, the servers' pub/sub connections are cut (events land that
they do not hear of) and, before they are back, redis-server is killed (SIGKILL) and restarted
from its append-only file, slowed down while it loads (``key-load-delay``) so that the catch-up
meets ``LOADING`` answers. Later the pub/sub connections are cut once more under load. The
followers' connections stay up through it all: what they get must be exactly each room's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from clients.protocol import RoomEvent
from clients.sdk import Client
from clients.tickets import Role
from metering import keys
from metering.store import stream_entries
from server.embedded_redis import RedisServer, free_port
from tests.server.conftest import open_tab, tip_until_answered
from tests.support.processes import TipmeterProcess, ticket
from tests.support.waiting import eventually, eventually_sync

ROOMS = ("r0", "r1", "r2", "r3")
TIPPERS = 4
#: Filler keys that make loading last long enough to be seen (with KEY_LOAD_DELAY_US a key).
FILLER_KEYS = 20_000
KEY_LOAD_DELAY_US = 100


class SlowLoadingRedis(RedisServer):
    """A persistent redis-server that loads its data slowly after a restart."""

    def command_line(self, binary: str) -> list[str]:
        """The usual command line, plus a delay per key loaded and frequent event processing
        while loading (so that clients get ``LOADING`` answers instead of silence)."""
        return [
            *super().command_line(binary),
            "--key-load-delay",
            str(KEY_LOAD_DELAY_US),
            "--loading-process-events-interval-bytes",
            "1024",
        ]


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[SlowLoadingRedis]:
    server = SlowLoadingRedis(tmp_path / "redis", port=free_port(), persistent=True)
    server.start()
    try:
        with redis.Redis(port=server.tcp_port) as admin:
            admin.config_set("appendfsync", "always")  # nothing acknowledged is lost by the kill
            with admin.pipeline(transaction=False) as pipe:
                for n in range(FILLER_KEYS):
                    pipe.set(f"filler:{n}", n)
                pipe.execute()
            admin.bgrewriteaof()  # an RDB preamble: the restart loads key by key, slowly
            eventually_sync(
                lambda: not admin.info("persistence")["aof_rewrite_in_progress"],
                timeout_s=30,
                what="the AOF rewrite finishes",
            )
        yield server
    finally:
        server.stop()


async def _collect(client: Client, into: dict[str, list[str]]) -> None:
    async for message in client.messages():
        if isinstance(message, RoomEvent):
            into[message.room].append(message.id)


@pytest.mark.slow
async def test_no_event_missed_or_repeated_through_a_redis_restart(
    restartable_redis: SlowLoadingRedis, tmp_path: Path
) -> None:
    env = {"TIPMETER_REDIS_URL": restartable_redis.url}
    a = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    b = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:
        for n in range(TIPPERS):
            await open_tab(a, f"tipper{n}", cap_minor=1_000_000)
        followers = {
            "watcher": Client(b.ws_url, ticket(Role.VIEWER, "watcher", currency="USD")),
            "model-r0": Client(b.ws_url, ticket(Role.MODEL, "r0")),
            "model-r1": Client(a.ws_url, ticket(Role.MODEL, "r1")),
            "overlay-r2": Client(b.ws_url, ticket(Role.BROADCAST, "r2")),
        }
        rooms_of = {
            "watcher": ROOMS,
            "model-r0": ("r0",),
            "model-r1": ("r1",),
            "overlay-r2": ("r2",),
        }
        seen: dict[str, dict[str, list[str]]] = {name: defaultdict(list) for name in followers}
        collectors = []
        for name, follower in followers.items():
            await follower.connect()
            for room in rooms_of[name]:
                await follower.subscribe(room)
            collectors.append(asyncio.create_task(_collect(follower, seen[name])))
        tippers = [
            Client(a.ws_url, ticket(Role.VIEWER, f"tipper{n}", currency="USD"))
            for n in range(TIPPERS)
        ]
        for tipper in tippers:
            await tipper.connect()
        applied = 0
        restarted = asyncio.Event()

        async def tip_away(n: int, tipper: Client) -> None:
            nonlocal applied
            i = 0
            while not restarted.is_set() or i < 250:
                await tip_until_answered(tipper, ROOMS[(i + n) % len(ROOMS)], f"t{n}-{i}")
                applied += 1
                i += 1

        tipping = [asyncio.create_task(tip_away(n, t)) for n, t in enumerate(tippers)]
        await eventually(lambda: applied >= 100, timeout_s=30, what="tips flow")
        admin = aioredis.Redis(port=restartable_redis.tcp_port)
        try:
            await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        unheard = applied  # tips land unheard; then Redis dies before they resubscribe
        await eventually(lambda: applied > unheard, interval_s=0.001, what="a tip lands unheard")
        restartable_redis.kill()
        await asyncio.to_thread(restartable_redis.start)  # returns once it answers PING
        restarted.set()
        before = applied
        await eventually(
            lambda: applied >= before + 100, timeout_s=60, what="tips flow after the restart"
        )
        admin = aioredis.Redis(port=restartable_redis.tcp_port)
        try:
            await admin.client_kill_filter(_type="pubsub")  # and cut them once more under load
        finally:
            await admin.aclose()
        await asyncio.gather(*tipping)

        admin = aioredis.Redis(port=restartable_redis.tcp_port)
        try:
            streams = {
                room: [
                    entry_id
                    for entry_id, _ in stream_entries(
                        await admin.xrange(keys.room_events(room), "-", "+")
                    )
                ]
                for room in ROOMS
            }
        finally:
            await admin.aclose()
        assert sum(len(ids) for ids in streams.values()) >= 100

        def complete() -> bool:
            return all(
                len(seen[name][room]) >= len(streams[room])
                for name in followers
                for room in rooms_of[name]
            )

        with contextlib.suppress(AssertionError):  # the comparison below says what is missing
            await eventually(complete, timeout_s=30)
        await asyncio.sleep(0.3)  # an observation window: anything repeated would arrive now
        for name in followers:
            for room in rooms_of[name]:
                got = seen[name][room]
                missing = len(set(streams[room]) - set(got))
                assert got == streams[room], (
                    f"{name} in {room}: {missing} missed, {len(got) - len(set(got))} repeated"
                )
            assert followers[name].stats.reconnects == 0  # the server caught them up itself
        for task in collectors:
            task.cancel()
        for client in (*followers.values(), *tippers):
            await client.close()
    finally:
        a.stop()
        b.stop()
