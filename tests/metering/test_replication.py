"""The opt-in replicated acknowledgement: a tip is acknowledged only once a replica holds it.

A real primary and a real replica (``REPLICAOF``); the replica is frozen with SIGSTOP to stand
for a replica that lags or is cut off, so ``WAIT`` cannot be satisfied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import redis

from metering.clock import FakeClock
from metering.errors import InvalidArgument, StoreUnavailable
from metering.meter import Meter, open_store
from metering.outcomes import Code
from metering.store import RedisTarget, Replication
from server.embedded_redis import RedisServer
from tests.metering.helpers import open_tab, tip
from tests.support.redis_procs import LocalCluster, start_standalone

LINK_UP_TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def primary_and_replica(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, RedisServer]]:
    base = tmp_path_factory.mktemp("replication")
    primary = start_standalone(base)
    replica = start_standalone(base)
    try:
        with redis.Redis(port=replica.tcp_port) as client:
            client.replicaof("127.0.0.1", primary.tcp_port)
        _wait_linked(replica.tcp_port)
        yield primary.url, replica
    finally:
        replica.stop()
        primary.stop()


def _wait_linked(port: int) -> None:
    """Return once the replica on ``port`` is linked to its primary and in sync."""
    with redis.Redis(port=port) as client:
        deadline = time.monotonic() + LINK_UP_TIMEOUT_S
        while client.info("replication").get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never linked to its primary"
            time.sleep(0.05)


@contextmanager
def frozen(server: RedisServer) -> Iterator[None]:
    """Stop ``server``'s process (it keeps its sockets, answers nothing) for the block."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


async def _meter(url: str, replicas: int) -> AsyncIterator[Meter]:
    target = RedisTarget(url=url, replication=Replication(replicas=replicas, wait_ms=300))
    store = await open_store(target)
    await store.client.flushall()
    meter = Meter(store, clock=FakeClock())
    try:
        yield meter
    finally:
        await meter.aclose()
        await store.close()


@pytest.fixture
async def gated(primary_and_replica: tuple[str, RedisServer]) -> AsyncIterator[Meter]:
    async for meter in _meter(primary_and_replica[0], replicas=1):
        yield meter


@pytest.fixture
async def ungated(primary_and_replica: tuple[str, RedisServer]) -> AsyncIterator[Meter]:
    async for meter in _meter(primary_and_replica[0], replicas=0):
        yield meter


async def test_a_tip_is_acknowledged_once_the_replica_holds_it(
    gated: Meter, primary_and_replica: tuple[str, RedisServer]
) -> None:
    ref = await open_tab(gated, cap_minor=5_000)
    result = await gated.tip(ref, tip("t1", 250))
    assert result.code is Code.APPLIED
    # WAIT answered only after the replica held the write: it can be read there now.
    with redis.Redis(port=primary_and_replica[1].tcp_port) as replica:
        tab_keys = [key for key in replica.keys("*") if b"tab" in key]
        assert tab_keys, "the replica holds none of the tab's keys"


async def test_a_tip_the_replica_did_not_confirm_is_refused_and_its_retry_is_a_duplicate(
    gated: Meter, primary_and_replica: tuple[str, RedisServer]
) -> None:
    ref = await open_tab(gated, cap_minor=5_000)
    with frozen(primary_and_replica[1]):
        with pytest.raises(StoreUnavailable, match="0 of 1 replicas confirmed"):
            await gated.tip(ref, tip("t1", 250))
        # Not acknowledged, so not relayed: the model is not credited for it yet.
        assert (await gated.rooms.read("room1")).events == []
    retry = await gated.tip(ref, tip("t1", 250))
    assert retry.code is Code.DUPLICATE
    assert retry.balance.accrued_minor == 250  # applied once, on the primary


async def test_without_the_gate_a_tip_is_acknowledged_while_no_replica_confirms(
    ungated: Meter, primary_and_replica: tuple[str, RedisServer]
) -> None:
    ref = await open_tab(ungated, cap_minor=5_000)
    with frozen(primary_and_replica[1]):
        result = await ungated.tip(ref, tip("t1", 250))
    assert result.code is Code.APPLIED


def test_the_replication_bounds_are_checked() -> None:
    for replicas, wait_ms in ((-1, 100), (17, 100), (1, 0), (1, 10_001)):
        with pytest.raises(InvalidArgument):
            Replication(replicas=replicas, wait_ms=wait_ms)
    assert Replication().replicas == 0  # off by default


@pytest.mark.slow
async def test_on_a_cluster_each_node_waits_for_its_replica(
    redis_cluster: LocalCluster, cluster_nodes: tuple[str, ...]
) -> None:
    replicas = [node for node in redis_cluster.nodes if _role(node) == "slave"]
    assert replicas
    for node in replicas:  # a fresh cluster's replicas may still be in their first sync
        _wait_linked(node.tcp_port)
    target = RedisTarget(cluster_nodes=cluster_nodes, replication=Replication(1, wait_ms=300))
    store = await open_store(target)
    meter = Meter(store, clock=FakeClock())
    try:
        # Thirty customers over the three primaries, tipping at once: batches that span nodes,
        # each node's calls followed by its own WAIT.
        refs = [await open_tab(meter, f"cust{n}", cap_minor=10_000) for n in range(30)]
        results = await asyncio.gather(
            *(meter.tip(ref, tip(f"t{n}", 100)) for n, ref in enumerate(refs))
        )
        assert {result.code for result in results} == {Code.APPLIED}

        with contextlib.ExitStack() as stack:
            for node in replicas:
                stack.enter_context(frozen(node))
            with pytest.raises(StoreUnavailable, match="replicas confirmed"):
                await meter.tip(refs[0], tip("late", 100))
        retry = await meter.tip(refs[0], tip("late", 100))
        assert retry.code is Code.DUPLICATE
    finally:
        await meter.aclose()
        await store.close()


def _role(node: RedisServer) -> str:
    with redis.Redis(port=node.tcp_port) as client:
        return str(client.info("replication")["role"])
