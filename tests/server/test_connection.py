"""A connection's send queue is bounded: a client that stops reading is dropped, alone."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.websockets import WebSocketDisconnect

from clients.protocol import Codec, Pong
from clients.tickets import Claims, Role
from server.connection import Connection
from server.metrics import Metrics
from server.ratelimit import TokenBucket
from tests.support.waiting import eventually


class StuckSocket:
    """A WebSocket whose client never reads: every send blocks until released."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed_with: int | None = None
        self.release = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        await self.release.wait()
        self.sent.append(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code


def _connection(socket: StuckSocket, metrics: Metrics, queue_max: int = 4) -> Connection:
    claims = Claims("tipmeter", 0, 1, "jti", Role.MODEL, "alice")
    return Connection(
        socket,  # type: ignore[arg-type]
        Codec.JSON,
        claims,
        "c1",
        send_queue_max=queue_max,
        tips=TokenBucket(1, 1, 0),
        frames=TokenBucket(1, 1, 0),
        metrics=metrics,
    )


async def test_a_client_that_does_not_read_is_dropped_with_4008() -> None:
    metrics = Metrics()
    stuck, healthy = StuckSocket(), StuckSocket()
    healthy.release.set()
    slow, fast = _connection(stuck, metrics), _connection(healthy, metrics)
    for n in range(10):  # the writer holds one, the queue four: the sixth frame overflows
        for conn in (slow, fast):
            conn.send(Pong(id=f"p{n}", server_time_ms=n), "pong")
        await asyncio.sleep(0)  # let the writers run between sends
    await eventually(lambda: stuck.closed_with is not None and len(healthy.sent) == 10)
    assert stuck.closed_with == 4008
    assert slow.closing
    assert len(healthy.sent) == 10  # the healthy client got everything, undelayed
    assert metrics.registry.get_sample_value("tipmeter_slow_consumers_total") == 1
    await slow.stop()
    await fast.stop()


async def test_close_soon_sends_what_is_queued_first() -> None:
    socket = StuckSocket()
    socket.release.set()
    conn = _connection(socket, Metrics(), queue_max=8)
    conn.send(Pong(id="p", server_time_ms=1), "pong")
    conn.close_soon(1001, "draining")
    await eventually(lambda: socket.closed_with is not None)
    assert len(socket.sent) == 1
    assert socket.closed_with == 1001
    await conn.stop()


def _writing(conn: Connection) -> bool:
    return conn._writer is not None


async def test_an_idle_connection_holds_no_writer_task() -> None:
    socket = StuckSocket()
    socket.release.set()
    conn = _connection(socket, Metrics(), queue_max=8)
    assert not _writing(conn)
    conn.send(Pong(id="p1", server_time_ms=1), "pong")
    conn.send(Pong(id="p2", server_time_ms=2), "pong")
    assert _writing(conn)
    await eventually(lambda: len(socket.sent) == 2 and not _writing(conn))
    assert not _writing(conn)  # the queue drained: the writer is gone
    conn.send(Pong(id="p3", server_time_ms=3), "pong")  # and comes back for the next frame
    await eventually(lambda: len(socket.sent) == 3)
    assert [m["text"] for m in socket.sent][-1].count('"p3"') == 1
    await conn.stop()


class GoneSocket(StuckSocket):
    """A WebSocket whose client vanished: sending raises what starlette raises then."""

    async def send(self, message: dict[str, Any]) -> None:
        raise WebSocketDisconnect(1006)


async def test_a_client_gone_mid_send_just_ends_the_connection() -> None:
    conn = _connection(GoneSocket(), Metrics(), queue_max=8)
    conn.send(Pong(id="p1", server_time_ms=1), "pong")
    await eventually(lambda: not _writing(conn))
    assert conn.closing
    assert not _writing(conn)
    await conn.reply(Pong(id="p2", server_time_ms=2), "pong")  # neither raises
    await conn.stop()
