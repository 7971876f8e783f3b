"""A thin synchronous facade over the protocol, for tools that cannot use asyncio.

Locust runs on gevent, which does not mix with asyncio; :class:`SyncClient` uses websockets'
threading client instead (gevent makes its sockets cooperative once monkey-patched). It is thin
on purpose: one connection, no reconnect — the caller decides what to do when it drops. Frames
are encoded and decoded by :mod:`clients.protocol`, exactly as the asyncio client does.

Example::

    with SyncClient("ws://127.0.0.1:8000/ws", ticket) as client:
        result = client.tip("alice", 500, "USD")
"""

from __future__ import annotations

import collections
import contextlib
import time
from typing import Final

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

from clients.errors import Disconnected, HandshakeRefused, Refused
from clients.protocol import (
    ClientMessage,
    Codec,
    Error,
    Invalid,
    Ping,
    Pong,
    RateView,
    Result,
    ServerMessage,
    SessionStart,
    SessionStop,
    SetRates,
    Subscribe,
    Subscribed,
    TabUpdate,
    Tip,
    Welcome,
    decode_server,
    encode,
)
from clients.sdk import (
    Connection,
    expect,
    handshake_error,
    new_id,
)

#: Pushed messages kept while waiting for an answer, before the oldest are dropped.
BACKLOG_MAX: Final = 1_000


class SyncClient(Connection):
    """One blocking connection. Not thread-safe: one user (or greenlet) per client."""

    def __init__(
        self,
        url: str,
        ticket: str,
        *,
        codec: Codec = Codec.MSGPACK,
        origin: str | None = None,
        open_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(url, codec=codec, origin=origin, open_timeout_s=open_timeout_s)
        self.ticket = ticket
        self._ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self._backlog: collections.deque[ServerMessage] = collections.deque(maxlen=BACKLOG_MAX)

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def connect(self) -> Welcome:
        """Open the connection and read the welcome; HandshakeRefused if refused."""
        stack = contextlib.ExitStack()
        try:
            self._ws = stack.enter_context(connect(**self._connect_args(self.ticket)))
        except InvalidHandshake as exc:
            raise handshake_error(exc) from exc
        self._stack = stack
        first = self._recv(self.open_timeout_s)
        if not isinstance(first, Welcome):
            raise Disconnected(f"expected a welcome, got {first!r}")
        self.welcome = first
        return first

    def close(self) -> None:
        """Close the connection."""
        self._ws = None
        self._stack.close()

    def _recv(self, timeout_s: float | None) -> ServerMessage | None:
        if self._ws is None:
            raise Disconnected("not connected")
        try:
            frame = self._ws.recv(timeout=timeout_s)
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise Disconnected(str(exc)) from exc
        message = decode_server(frame, self.codec)
        if isinstance(message, Invalid):
            raise Disconnected(f"invalid frame from the server: {message.message}")
        tab = message.tab if isinstance(message, Welcome | Result | Error | TabUpdate) else None
        if tab is not None:
            self._see_tab(tab)
        return message

    def send(self, message: ClientMessage) -> None:
        """Send one message."""
        if self._ws is None:
            raise Disconnected("not connected")
        try:
            self._ws.send(encode(message, self.codec))
        except ConnectionClosed as exc:
            raise Disconnected(str(exc)) from exc

    def _call(self, message: ClientMessage, op_id: str, timeout_s: float) -> ServerMessage:
        """Send ``message`` and read until its answer."""
        self.send(message)
        return self._answer(op_id, timeout_s)

    def _answer(self, op_id: str, timeout_s: float) -> ServerMessage:
        """Read until the answer to ``op_id``; other messages go to the backlog."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {op_id} in {timeout_s} s")
            message = self._recv(remaining)
            if message is None:
                continue
            if getattr(message, "id", None) == op_id:
                if isinstance(message, Error):
                    raise Refused(message.code, message.message, message.tab)
                return message
            self._backlog.append(message)

    def tip(
        self,
        room: str,
        amount_minor: int,
        currency: str,
        *,
        tip_id: str | None = None,
        message: str = "",
        anonymous: bool = False,
        timeout_s: float = 10.0,
    ) -> Result:
        """Tip and wait for the answer; Refused on an error reply. Pass ``tip_id`` to retry a
        tip whose answer you lost."""
        op_id = tip_id or new_id("tip")
        tip = Tip(op_id, room, amount_minor, currency, message, anonymous)
        return expect(self._call(tip, op_id, timeout_s), Result)

    def start_session(
        self, room: str, kind: str, *, session_id: str | None = None, timeout_s: float = 10.0
    ) -> Result:
        """Start a metered show; Refused on an error reply."""
        op_id = session_id or new_id("show")
        return expect(self._call(SessionStart(op_id, room, kind), op_id, timeout_s), Result)

    def stop_session(self, session_id: str, timeout_s: float = 10.0) -> Result:
        """Stop a session."""
        op_id = new_id("stop")
        return expect(self._call(SessionStop(op_id, session_id), op_id, timeout_s), Result)

    def set_rates(self, rates: dict[str, RateView], timeout_s: float = 10.0) -> Result:
        """Set the room's prices by kind of show (models only); Refused on an error reply."""
        op_id = new_id("rates")
        return expect(self._call(SetRates(op_id, rates), op_id, timeout_s), Result)

    def subscribe(self, room: str, after: str | None = None, timeout_s: float = 10.0) -> Subscribed:
        """Follow ``room``'s events after ``after``; read them with :meth:`next_message`."""
        op_id = new_id("sub")
        subscribe = Subscribe(room=room, after=after, id=op_id)
        return expect(self._call(subscribe, op_id, timeout_s), Subscribed)

    def ping(self, timeout_s: float = 10.0) -> Pong:
        """A round trip through the server."""
        op_id = new_id("ping")
        return expect(self._call(Ping(op_id), op_id, timeout_s), Pong)

    def next_message(self, timeout_s: float | None = None) -> ServerMessage | None:
        """The next pushed message (room event, tab update …), or None after ``timeout_s``."""
        if self._backlog:
            return self._backlog.popleft()
        return self._recv(timeout_s)


__all__ = ["HandshakeRefused", "Refused", "SyncClient"]
