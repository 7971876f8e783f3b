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
from types import TracebackType
from typing import Final

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin, Subprotocol

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
    TabView,
    Tip,
    Welcome,
    decode_server,
    encode,
)
from clients.sdk import SERVER_FRAME_BYTES_MAX, handshake_error, new_id, with_ticket

#: Pushed messages kept while waiting for an answer, before the oldest are dropped.
BACKLOG_MAX: Final = 1_000


class SyncClient:
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
        self.url = url
        self.ticket = ticket
        self.codec = codec
        self.origin = origin
        self.open_timeout_s = open_timeout_s
        self.welcome: Welcome | None = None
        #: The viewer's tab as last seen (welcome, results, refusals and pushes), as in the
        #: asyncio client: a newer ``version``, or another ``tab_id``, replaces it.
        self.tab: TabView | None = None
        self._ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self._backlog: collections.deque[ServerMessage] = collections.deque(maxlen=BACKLOG_MAX)

    def __enter__(self) -> SyncClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> Welcome:
        """Open the connection and read the welcome; HandshakeRefused if refused."""
        stack = contextlib.ExitStack()
        try:
            self._ws = stack.enter_context(
                connect(
                    with_ticket(self.url, self.ticket),
                    subprotocols=[Subprotocol(self.codec.subprotocol)],
                    origin=Origin(self.origin) if self.origin is not None else None,
                    compression=None,
                    max_size=SERVER_FRAME_BYTES_MAX,
                    open_timeout=self.open_timeout_s,
                )
            )
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

    def _see_tab(self, tab: TabView) -> None:
        current = self.tab
        if current is None or current.tab_id != tab.tab_id or tab.version > current.version:
            self.tab = tab

    def send(self, message: ClientMessage) -> None:
        """Send one message."""
        if self._ws is None:
            raise Disconnected("not connected")
        try:
            self._ws.send(encode(message, self.codec))
        except ConnectionClosed as exc:
            raise Disconnected(str(exc)) from exc

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
        message: str = "",
        anonymous: bool = False,
        tip_id: str | None = None,
        timeout_s: float = 10.0,
    ) -> Result:
        """Tip and wait for the answer; Refused on an error reply."""
        op_id = tip_id or new_id("tip")
        self.send(
            Tip(
                id=op_id,
                room=room,
                amount_minor=amount_minor,
                currency=currency,
                message=message,
                anonymous=anonymous,
            )
        )
        answer = self._answer(op_id, timeout_s)
        if not isinstance(answer, Result):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    def start_session(
        self, room: str, kind: str, *, session_id: str | None = None, timeout_s: float = 10.0
    ) -> Result:
        """Start a metered show; Refused on an error reply."""
        op_id = session_id or new_id("show")
        self.send(SessionStart(id=op_id, room=room, kind=kind))
        answer = self._answer(op_id, timeout_s)
        if not isinstance(answer, Result):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    def stop_session(self, session_id: str, timeout_s: float = 10.0) -> Result:
        """Stop a session."""
        op_id = new_id("stop")
        self.send(SessionStop(id=op_id, session_id=session_id))
        answer = self._answer(op_id, timeout_s)
        if not isinstance(answer, Result):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    def set_rates(self, rates: dict[str, RateView], timeout_s: float = 10.0) -> Result:
        """Set the room's prices by kind of show (models only); Refused on an error reply."""
        op_id = new_id("rates")
        self.send(SetRates(id=op_id, rates=rates))
        answer = self._answer(op_id, timeout_s)
        if not isinstance(answer, Result):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    def subscribe(self, room: str, after: str | None = None, timeout_s: float = 10.0) -> Subscribed:
        """Follow ``room``'s events after ``after``; read them with :meth:`next_message`."""
        op_id = new_id("sub")
        self.send(Subscribe(room=room, after=after, id=op_id))
        answer = self._answer(op_id, timeout_s)
        if not isinstance(answer, Subscribed):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    def ping(self, timeout_s: float = 10.0) -> Pong:
        """A round trip through the server."""
        op_id = new_id("ping")
        self.send(Ping(id=op_id))
        answer = self._answer(op_id, timeout_s)
        if not isinstance(answer, Pong):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    def next_message(self, timeout_s: float | None = None) -> ServerMessage | None:
        """The next pushed message (room event, tab update …), or None after ``timeout_s``."""
        if self._backlog:
            return self._backlog.popleft()
        return self._recv(timeout_s)


__all__ = ["HandshakeRefused", "Refused", "SyncClient"]
