"""A small HTTP/1.1 client: h11 over asyncio streams, one request per connection.

Settlement makes few, small requests (a gateway call per tab, a webhook per outcome), so it
needs no pool and no HTTP/2. h11 (already installed with uvicorn) does the protocol, sans I/O;
this module only moves bytes, with a deadline on the whole exchange and a bound on the reply.
httpx would do the same but is a test-only dependency here, and a second HTTP stack in the
server would bring nothing these calls need.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import h11

from settlement.errors import SettlementError, SettlementMisuse

#: Largest reply body read; a larger one is cut off and the request fails.
REPLY_BYTES_MAX: Final = 1_048_576
#: Bytes read from the socket at a time.
READ_CHUNK_BYTES: Final = 65_536


class HttpFailure(SettlementError):
    """The exchange did not complete: no connection, a timeout, a malformed or oversized reply.

    The request may or may not have been acted on by the server.
    """


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP reply: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


async def request(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeout_s: float,
    reply_bytes_max: int = REPLY_BYTES_MAX,
) -> Reply:
    """Send one request and return the reply; raise HttpFailure if the exchange fails.

    ``timeout_s`` bounds the whole exchange (connect, send, receive).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettlementMisuse(f"not an http(s) URL: {url!r}")
    try:
        return await asyncio.wait_for(
            _exchange(
                method,
                parts.scheme,
                parts.hostname,
                parts.port,
                _target(url),
                body,
                headers or {},
                reply_bytes_max,
            ),
            timeout_s,
        )
    except TimeoutError:
        raise HttpFailure(f"{method} {url}: no reply in {timeout_s:g} s") from None
    except (OSError, h11.ProtocolError) as exc:
        raise HttpFailure(f"{method} {url}: {exc}") from exc


def _target(url: str) -> str:
    parts = urlsplit(url)
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


async def _exchange(
    method: str,
    scheme: str,
    host: str,
    port: int | None,
    target: str,
    body: bytes,
    headers: Mapping[str, str],
    reply_bytes_max: int,
) -> Reply:
    tls = ssl.create_default_context() if scheme == "https" else None
    port = port or (443 if tls is not None else 80)
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        conn = h11.Connection(our_role=h11.CLIENT)
        out = [
            ("Host", host if port in (80, 443) else f"{host}:{port}"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *headers.items(),
        ]
        writer.write(conn.send(h11.Request(method=method, target=target, headers=out)))
        if body:
            writer.write(conn.send(h11.Data(data=body)))
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()
        status = 0
        reply_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(READ_CHUNK_BYTES))
            elif isinstance(event, h11.Response):
                status = event.status_code
                reply_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > reply_bytes_max:
                    raise HttpFailure(f"reply larger than {reply_bytes_max} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Reply(status, reply_headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpFailure("the server closed the connection before replying")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
