"""A tip's new balance is announced to the customer's other devices, and only when there may be
one; the tip's own answer carries the balance, running shows' burn included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis

from metering import keys
from metering.devices import record_devices
from metering.meter import Meter
from metering.outcomes import Code
from metering.sessions import Rate, SessionKind
from server.embedded_redis import RedisServer
from tests.metering.helpers import open_tab, tip


@pytest.fixture
def live(redis_server: RedisServer) -> Iterator[redis.client.PubSub]:
    """A subscriber to customer c1's live channel."""
    client = redis.Redis(port=redis_server.tcp_port)
    pubsub = redis.client.PubSub(client.connection_pool)
    pubsub.ssubscribe(keys.customer_channel("c1"))
    assert _next(pubsub, "ssubscribe") is not None
    try:
        yield pubsub
    finally:
        pubsub.close()
        client.close()


def _next(
    pubsub: redis.client.PubSub, kind: str = "smessage", wait_s: float = 0.5
) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        message: dict[str, Any] | None = pubsub.get_message(timeout=0.05)
        if message is not None and message["type"] == kind:
            return message
    return None


@pytest.mark.parametrize(
    ("counts", "announced"),
    [
        ({}, True),  # nothing recorded (a Redis that lost the key): announce, to be safe
        ({"proc-a": 1}, False),  # only the tipping device: its answer tells it
        ({"proc-a": 2}, True),  # another device on the same process
        ({"proc-a": 1, "proc-b": 1}, True),  # another device on another process
    ],
)
async def test_a_tip_is_announced_only_if_another_device_may_listen(
    meter: Meter, live: redis.client.PubSub, counts: dict[str, int], announced: bool
) -> None:
    ref = await open_tab(meter, cap_minor=5_000)
    _next(live, wait_s=0.2)  # the opening's announcement
    for owner, count in counts.items():
        await record_devices(meter.store, "c1", owner, count)
    result = await meter.tip(ref, tip("t1", 250))
    assert result.code is Code.APPLIED
    message = _next(live)
    assert (message is not None) is announced
    if message is not None:
        tab = msgpack.unpackb(message["data"])
        assert (tab["tab"], tab["accrued"], tab["ver"]) == (
            ref.tab_id,
            250,
            result.balance.version,
        )


async def test_counts_follow_connections_and_drop_to_nothing(meter: Meter) -> None:
    key = keys.customer_devices("c1")
    await record_devices(meter.store, "c1", "proc-a", 2)
    await record_devices(meter.store, "c1", "proc-b", 1)
    assert await meter.store.client.hgetall(key) == {b"proc-a": b"2", b"proc-b": b"1"}
    assert 0 < await meter.store.client.pttl(key) <= 86_400_000
    await record_devices(meter.store, "c1", "proc-a", 0)
    assert await meter.store.client.hgetall(key) == {b"proc-b": b"1"}


async def test_the_answer_to_a_tip_carries_the_running_shows_burn(meter: Meter) -> None:
    await meter.sessions.set_rates("alice", {SessionKind.PRIVATE: Rate(600)})
    ref = await open_tab(meter, cap_minor=10_000)
    started = await meter.sessions.start(
        ref, session_id="s1", room="alice", kind="private", currency="USD", owner="proc-a"
    )
    assert started.code is Code.APPLIED
    applied = await meter.tip(ref, tip("t1", 100))
    assert applied.balance.burn_minor_per_minute == 600
    refused = await meter.tip(ref, tip("t2", 9_999))
    assert refused.code is Code.OVER_CAP
    assert refused.balance.burn_minor_per_minute == 600
