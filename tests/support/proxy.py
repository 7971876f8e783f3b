"""A TCP proxy for tests: forwards bytes both ways, and can lose the server's answers or cut
every connection, to play a network that fails at the worst moment."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    """Listens on 127.0.0.1 and forwards each connection to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        #: While True, bytes from the server are dropped instead of forwarded.
        self.swallow_downstream = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.downstream_bytes_dropped = 0

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        self._writers.update((writer, upstream_writer))
        for task in (
            asyncio.create_task(self._pipe(reader, upstream_writer, downstream=False)),
            asyncio.create_task(self._pipe(upstream_reader, writer, downstream=True)),
        ):
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65_536):
                if downstream and self.swallow_downstream:
                    self.downstream_bytes_dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    def cut(self) -> None:
        """Abort every open connection, both sides, without a close handshake."""
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
