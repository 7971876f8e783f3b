"""The live path on a local Redis Cluster: a primary killed under the servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from clients.protocol import RoomEvent, TabUpdate
from clients.sdk import Client
from clients.tickets import Role
from metering import keys
from tests.server.conftest import next_of, open_tab, tip_until_answered
from tests.support.processes import TipmeterProcess, logs_on_failure, ticket
from tests.support.redis_procs import CLUSTER_SLOTS, LocalCluster
from tests.support.waiting import eventually_sync


def _on_first_primary(make: str, channel_of: Callable[[str], str], count: int = 2) -> list[str]:
    """Ids whose channel hashes to the first primary's slots (0 … 5460), in different slots."""
    found: list[str] = []
    slots: set[int] = set()
    n = 0
    while len(found) < count:
        candidate = f"{make}{n}"
        n += 1
        slot = key_slot(channel_of(candidate).encode())
        if slot < CLUSTER_SLOTS // 3 and slot not in slots:
            found.append(candidate)
            slots.add(slot)
    return found


def _wait_for_failover(cluster: LocalCluster, timeout_s: float = 30) -> None:
    """Wait until another node serves the killed first primary's slots, as the cluster says.

    (Waiting for ``master,fail`` and ``cluster_state:ok`` was not enough: a node reports the
    failure flag before it updates its state, so the two could be read between them.)
    """
    killed = cluster.nodes[0].port
    with redis.Redis(port=cluster.nodes[1].tcp_port) as client:

        def taken_over() -> bool:
            info = client.execute_command("CLUSTER", "INFO")
            ranges = client.execute_command("CLUSTER", "SLOTS")
            owner = next((int(r[2][1]) for r in ranges if int(r[0]) <= 0 <= int(r[1])), killed)
            return b"cluster_state:ok" in info and owner != killed

        eventually_sync(taken_over, timeout_s=timeout_s, what="the replica takes over")


def _wait_for_rejoin(cluster: LocalCluster, timeout_s: float = 30) -> None:
    with redis.Redis(port=cluster.nodes[1].tcp_port) as client:
        eventually_sync(
            lambda: b"fail" not in client.execute_command("CLUSTER", "NODES"),
            timeout_s=timeout_s,
            what="the killed node rejoins",
        )


@pytest.mark.slow
async def test_fan_out_survives_a_primary_killed(own_cluster: LocalCluster, tmp_path: Path) -> None:
    """The killed primary served a customer's and a room's channels (in different slots): after
    the failover, the customer's other device gets its tab updates and the model her events."""
    env = {"TIPMETER_REDIS_CLUSTER_NODES": ",".join(own_cluster.startup_nodes)}
    a = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    b = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:
        with logs_on_failure(a, b):
            customer, _ = _on_first_primary("cust", keys.customer_channel)
            room, _ = _on_first_primary("room", keys.room_channel)
            await open_tab(a, customer, cap_minor=100_000)
            async with (
                Client(a.ws_url, ticket(Role.VIEWER, customer, currency="USD")) as phone,
                Client(b.ws_url, ticket(Role.VIEWER, customer, currency="USD")) as laptop,
                Client(b.ws_url, ticket(Role.MODEL, room)) as model,
            ):
                await model.subscribe(room)
                await tip_until_answered(phone, room, "before", interval_s=0.1)
                await next_of(model, RoomEvent, 20, lambda m: m.data.get("tip_id") == "before")
                seen = (await next_of(laptop, TabUpdate, 20)).tab.version

                own_cluster.nodes[0].kill()  # the primary of the customer's and the room's slots
                await asyncio.to_thread(_wait_for_failover, own_cluster)

                await tip_until_answered(phone, room, "after", interval_s=0.1)
                later = await next_of(laptop, TabUpdate, 20, lambda m: m.tab.version > seen)
                assert later.tab.accrued_minor == 2
                await next_of(model, RoomEvent, 20, lambda m: m.data.get("tip_id") == "after")
                for client in (phone, laptop, model):
                    assert client.stats.reconnects == 0

                # The killed node comes back (as a replica); the servers then shut down cleanly.
                await asyncio.to_thread(own_cluster.nodes[0].start)
                await asyncio.to_thread(_wait_for_rejoin, own_cluster)
                await tip_until_answered(phone, room, "rejoined", interval_s=0.1)
            for server in (a, b):
                assert server.stop() == 0
                assert "Application shutdown failed" not in server.log()
    finally:
        a.stop()
        b.stop()


@pytest.mark.slow
async def test_a_burst_of_connections_is_welcomed_on_a_cluster(
    cluster_nodes: tuple[str, ...], tmp_path: Path
) -> None:
    """A hundred viewers connecting at once, through a pool of four connections per node:
    every handshake waits for a connection rather than being refused ``unavailable``."""
    env = {
        "TIPMETER_REDIS_CLUSTER_NODES": ",".join(cluster_nodes),
        "TIPMETER_REDIS_CONNECTIONS_MAX": "4",
    }
    server = TipmeterProcess(["serve"], env, cwd=tmp_path).start()
    try:

        async def connect(n: int) -> str:
            try:
                async with Client(server.ws_url, ticket(Role.VIEWER, f"burst{n}", currency="USD")):
                    return "welcomed"
            except Exception as exc:  # the test counts every kind of failure
                return repr(exc)

        outcomes = await asyncio.gather(*(connect(n) for n in range(100)))
        refused = [outcome for outcome in outcomes if outcome != "welcomed"]
        assert refused == [], f"{len(refused)} of 100 not welcomed, e.g. {refused[:3]}"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_primary_killed_at_once_is_taken_over(own_cluster: LocalCluster) -> None:
    """A test's cluster has every replica in sync when it starts: its first primary, killed at
    once, is replaced by its replica (a replica still on its first copy never takes over, and
    the cluster stayed down for good)."""
    own_cluster.nodes[0].kill()
    _wait_for_failover(own_cluster)
