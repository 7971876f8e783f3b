"""A lean RESP connection for sharded pub/sub: subscribe, unsubscribe, read pushes.

redis-py's PubSub is general (patterns, handlers, RESP2 and RESP3, health checks) and parses
each message into a dictionary in Python; a server that receives a message per tip and per
billed second pays for that on every one. This connection does only what the hub needs — send
``SSUBSCRIBE``/``SUNSUBSCRIBE`` and read the pushes — with hiredis packing and parsing in C.
It speaks to one Redis node: a unix socket or TCP (optionally TLS), with ``AUTH`` when the URL
carries credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

import hiredis
from redis.crc import key_slot

#: Bytes read from the socket at a time.
READ_CHUNK_BYTES: Final = 65_536
#: Channels named in one SSUBSCRIBE command at most.
CHANNELS_PER_COMMAND: Final = 500


def _by_slot(channels: list[str]) -> list[list[str]]:
    """``channels`` grouped by hash slot, in their order: a cluster refuses one SSUBSCRIBE
    naming channels of different slots (CROSSSLOT), even on the node that serves them all."""
    groups: dict[int, list[str]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.encode()), []).append(channel)
    return list(groups.values())


class PubSubError(Exception):
    """Redis refused a pub/sub command, or the connection broke."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one Redis node listens, and how to log in."""

    host: str = ""
    port: int = 0
    unix_path: str = ""
    tls: bool = False
    username: str = ""
    password: str = ""
    connect_timeout_s: float = 2.0

    @classmethod
    def from_url(cls, url: str, connect_timeout_s: float = 2.0) -> Endpoint:
        """Parse ``redis://``, ``rediss://`` or ``unix://`` URLs."""
        parts = urlsplit(url)
        username = unquote(parts.username or "")
        password = unquote(parts.password or "")
        if parts.scheme == "unix":
            return cls(
                unix_path=parts.path,
                username=username,
                password=password,
                connect_timeout_s=connect_timeout_s,
            )
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {url!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            tls=parts.scheme == "rediss",
            username=username,
            password=password,
            connect_timeout_s=connect_timeout_s,
        )


class PushConnection:
    """One connection in subscriber mode."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._parser = hiredis.Reader()

    @classmethod
    async def open(cls, endpoint: Endpoint) -> PushConnection:
        """Connect (and log in) within the endpoint's connect timeout."""
        try:
            async with asyncio.timeout(endpoint.connect_timeout_s):
                if endpoint.unix_path:
                    reader, writer = await asyncio.open_unix_connection(endpoint.unix_path)
                else:
                    context = ssl.create_default_context() if endpoint.tls else None
                    reader, writer = await asyncio.open_connection(
                        endpoint.host, endpoint.port, ssl=context
                    )
                conn = cls(reader, writer)
                if endpoint.password:
                    login = (
                        ("AUTH", endpoint.username, endpoint.password)
                        if endpoint.username
                        else (
                            "AUTH",
                            endpoint.password,
                        )
                    )
                    await conn.send(login)
                    reply = await conn.read()
                    if isinstance(reply, hiredis.ReplyError):
                        await conn.close()
                        raise PubSubError(f"AUTH refused: {reply}")
                return conn
        except (OSError, TimeoutError) as exc:
            raise PubSubError(f"cannot connect: {exc}") from exc

    async def send(self, *commands: tuple[str | bytes, ...]) -> None:
        """Send commands (packed in C) and wait until the socket took them."""
        try:
            self._writer.writelines(
                hiredis.pack_command(cast(Any, command)) for command in commands
            )
            await self._writer.drain()
        except OSError as exc:
            raise PubSubError(f"send failed: {exc}") from exc

    async def subscribe(self, channels: list[str]) -> None:
        """SSUBSCRIBE to ``channels``, one command per hash slot (the confirmations arrive as
        pushes)."""
        await self.send(
            *(
                ("SSUBSCRIBE", *group[i : i + CHANNELS_PER_COMMAND])
                for group in _by_slot(channels)
                for i in range(0, len(group), CHANNELS_PER_COMMAND)
            )
        )

    async def unsubscribe(self, channel: str) -> None:
        """SUNSUBSCRIBE from ``channel``."""
        await self.send(("SUNSUBSCRIBE", channel))

    async def read(self) -> Any:
        """The next reply or push: ``[b"smessage", channel, data]``, ``[b"ssubscribe", …]``."""
        while True:
            item = self._parser.gets()
            if item is not False:
                return item
            try:
                data = await self._reader.read(READ_CHUNK_BYTES)
            except OSError as exc:
                raise PubSubError(f"read failed: {exc}") from exc
            if not data:
                raise PubSubError("Redis closed the connection")
            self._parser.feed(data)

    async def close(self) -> None:
        """Close the socket."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
