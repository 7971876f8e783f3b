"""A webhook receiver on loopback for tests: records each request, answers scripted statuses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11

#: Bytes of one request the receiver reads at most.
REQUEST_BYTES_MAX = 1_048_576


@dataclass
class Received:
    """One request as received."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each request with the next status of ``statuses`` (200 once they run out)."""

    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        """Where to send webhooks."""
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(our_role=h11.SERVER)
        request: h11.Request | None = None
        body = b""
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65_536)
                size += len(data)
                if size > REQUEST_BYTES_MAX:
                    break
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if request is not None:
            self.received.append(
                Received(
                    request.target.decode(),
                    {k.decode().lower(): v.decode() for k, v in request.headers},
                    body,
                )
            )
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(
                conn.send(h11.Response(status_code=status, headers=[("Content-Length", "0")]))
            )
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        writer.close()


@asynccontextmanager
async def receiving(statuses: list[int] | None = None) -> AsyncIterator[Receiver]:
    """Run a Receiver on a free loopback port for the duration of the block."""
    receiver = Receiver(statuses=list(statuses or []))
    server = await asyncio.start_server(receiver._serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await server.wait_closed()
