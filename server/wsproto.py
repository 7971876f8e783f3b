"""The WebSocket transport: uvicorn's ``websockets-sansio`` protocol, with the bounds it lacks.

uvicorn moves the bytes; this subclass changes what it does at the edges, where a client that
misbehaves (or vanishes) could otherwise cost the server memory, log volume or money:

- **Pongs are bounded.** uvicorn answers every ping at once, whether or not the client reads the
  answers; a client that floods pings and never reads grew the server by about 20 MB/s. Here,
  once the transport's write buffer passes its high-water mark (:data:`WRITE_BUFFER_BYTES_MAX`),
  reading from that client stops until the buffer drains: a peer that does not read is not read
  either, so what it can make the server buffer is bounded by the mark plus one read.
- **A request that cannot be parsed gets an answer.** A request line or header over 8 KB (a
  ticket pasted into a URL, say) was left unanswered with the socket open; it now gets a JSON
  error (414, 431 or 400) and the connection is closed.
- **Errors are JSON, and a refused handshake is one log line.** A crash before the handshake
  answers the documented ``{"error": {"code": "internal_error", …}}`` instead of a plain-text
  500; the app's refusals (HTTP answers to the upgrade) are logged once, by the app, at warning
  level, and not again here at error level.
- **Liveness can be tightened per connection.** The app may ask for pings every
  ``interval_s`` with a pong deadline of ``timeout_s`` (a viewer funding a running show), and
  back; a connection that misses its deadline is aborted at once, so the app learns of the
  loss even when the write buffer is full and a graceful close would wait for it to drain.
  The app reaches this through the ASGI scope's extension :data:`KEEPALIVE_EXTENSION`.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final, cast

import orjson
from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders
from websockets.http11 import Response

log = logging.getLogger("tipmeter.ws")
#: The sans-I/O protocol's own logger. It writes a line per connection opened, closed and
#: rejected at info level, which repeats uvicorn's line and ours: only its warnings and errors
#: (a parser that failed) are kept.
_PROTOCOL_LOG: Final = logging.getLogger("tipmeter.ws.protocol")
_PROTOCOL_LOG.setLevel(logging.WARNING)

#: Bytes the transport may hold for one client before the server stops reading from it.
WRITE_BUFFER_BYTES_MAX: Final = 64 * 1024
#: The ASGI scope extension through which the app changes a connection's keepalive:
#: ``scope["extensions"][KEEPALIVE_EXTENSION]["set"](interval_s, timeout_s)``; ``None`` for
#: both restores the server's defaults.
KEEPALIVE_EXTENSION: Final = "tipmeter.keepalive"

#: Set keepalive: (interval_s, timeout_s), or (None, None) for the server's defaults.
SetKeepalive = Callable[[float | None, float | None], None]


def json_error_bytes(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with the API's JSON error body, closing the connection."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
    )
    return Response(status, HTTPStatus(status).phrase, headers, body).serialize()


class TipmeterWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol with bounded buffers, JSON errors, one log line per
    refusal and a per-connection keepalive (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn.logger = _PROTOCOL_LOG
        self.default_ping_interval = self.ping_interval
        self.default_ping_timeout = self.ping_timeout
        #: True while reading is held because the client does not read what it is sent.
        self.held_for_writes = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Set the write buffer's high-water mark, then as uvicorn does."""
        super().connection_made(transport)
        cast(asyncio.Transport, transport).set_write_buffer_limits(high=WRITE_BUFFER_BYTES_MAX)

    # Bounded writes --------------------------------------------------------------------------

    def pause_writing(self) -> None:
        """The client reads too slowly: stop reading from it (its pings make more writes)."""
        super().pause_writing()
        if not self.held_for_writes:
            self.held_for_writes = True
            if not self.read_paused:
                self.transport.pause_reading()

    def resume_writing(self) -> None:
        """The buffer drained: read again, unless the app's queue still holds a message."""
        super().resume_writing()
        if self.held_for_writes:
            self.held_for_writes = False
            if not self.read_paused and not self.transport.is_closing():
                self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        """The next event for the app; reading resumes only if writes are not held too."""
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self.held_for_writes:
                self.transport.resume_reading()
        return message

    # Requests that cannot be parsed ----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the parser; answer a request it refuses (too long, not HTTP) and close."""
        super().data_received(data)
        problem = self.conn.handshake_exc
        if self.handshake_initiated or problem is None or self.transport.is_closing():
            return
        self.conn.data_to_send()  # websockets' plain-text answer; ours is JSON
        if isinstance(problem, RequestLineTooLong):
            status, code = 414, "url_too_long"
            message = "the request line is over 8 KB; a ticket is at most 2048 characters"
        elif isinstance(problem, HeaderLineTooLong | TooManyHeaders):
            status, code = 431, "headers_too_large"
            message = "a header is over 8 KB, or there are too many headers"
        else:
            status, code, message = 400, "malformed_request", "not a valid HTTP request"
        log.warning(
            "WebSocket handshake refused", extra={"fields": {"code": code, "status": status}}
        )
        self.handshake_initiated = self.handshake_complete = self.close_sent = True
        self.transport.write(json_error_bytes(status, code, message))
        self.transport.close()

    # JSON errors and quiet refusals ----------------------------------------------------------

    def send_500_response(self) -> None:
        """Answer a crash before the handshake with the documented JSON error."""
        if self.initial_response or self.handshake_complete:
            return
        self.handshake_complete = True
        self.transport.write(json_error_bytes(500, "internal_error", "internal error; retry"))

    async def send(self, message: ASGISendEvent) -> None:
        """As uvicorn, except that the app's HTTP answer to an upgrade is not logged here (the
        app logs its refusals) and completes the handshake (so uvicorn does not log an error)."""
        if (
            message["type"] == "websocket.http.response.start"
            and not self.handshake_complete
            and self.initial_response is None
        ):
            await self.writable.wait()
            status = message["status"]
            if not (100 <= status < 600):
                raise RuntimeError(f"Invalid HTTP status code {status} in response.")
            headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
            self.initial_response = (status, headers, b"")
            return
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and self.close_sent:
            self.handshake_complete = True

    # Per-connection keepalive ----------------------------------------------------------------

    def handle_connect(self, event: Any) -> None:
        """As uvicorn; then offer the app :data:`KEEPALIVE_EXTENSION` in the scope."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            extensions = scope.setdefault("extensions", {})
            if extensions is not None:
                extensions[KEEPALIVE_EXTENSION] = {"set": self.set_keepalive}

    def set_keepalive(self, interval_s: float | None, timeout_s: float | None) -> None:
        """Ping every ``interval_s`` and drop the connection ``timeout_s`` after a ping that
        got no pong; ``None`` restores the server's defaults. Takes effect at once: a ping is
        sent now when the interval is tightened."""
        interval = self.default_ping_interval if interval_s is None else interval_s
        timeout = self.default_ping_timeout if timeout_s is None else timeout_s
        if (interval, timeout) == (self.ping_interval, self.ping_timeout):
            return
        current = self.ping_interval if self.ping_interval is not None else float("inf")
        tighter = interval is not None and interval < current
        self.ping_interval, self.ping_timeout = interval, timeout
        if not self.handshake_complete or self.close_sent or self.transport.is_closing():
            return
        self.stop_keepalive()
        if tighter:
            self.send_keepalive_ping()
        else:
            self.start_keepalive()

    def keepalive_timeout(self) -> None:
        """No pong in time: abort the connection (a graceful close would wait for a write
        buffer that a vanished client never drains, and the app would not learn of it)."""
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        log.info("WebSocket keepalive ping timeout", extra={"fields": {"client": self.client}})
        self.close_sent = True
        self.transport.abort()
