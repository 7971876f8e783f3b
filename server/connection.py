"""One accepted WebSocket: who it speaks for, what it follows, and its bounded send queue.

Every pushed frame goes through :meth:`Connection.send_frame`, which never blocks: it puts the
frame on the connection's queue, and a writer task sends it. The writer exists only while the
queue has frames (an idle connection holds no task: at 10,000 connections the difference is
measurable). A client that reads too slowly fills its queue; it is then dropped (close code
4008) instead of slowing the fan-out for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from clients.protocol import (
    CloseCode,
    Codec,
    ServerMessage,
    TabUpdate,
    TabView,
    Warning,
    encode,
)
from clients.tickets import Claims, Role
from metering.sessions import SessionRef
from server.events import Audience, LiveEvent
from server.metrics import Metrics
from server.ratelimit import TokenBucket

log = logging.getLogger("tipmeter.ws")

#: What a send raises when the client is gone (uvicorn's transport, starlette's wrapper).
GONE: Final = (OSError, RuntimeError, WebSocketDisconnect)

#: Live events held for one room while a connection catches up on its backlog; past it they
#: are dropped and read from the room's stream instead (never a reason to drop the client).
CATCH_UP_BUFFER_MAX: Final = 1_000
#: How long a connection that is over may take to send what it queued and its close frame (the
#: error replies before a 4029, the close code itself) before it is cut.
FLUSH_S_MAX: Final = 5.0


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


class Connection:
    """The server's side of one client connection."""

    # Slots: at 10,000 connections a per-instance dict is a measurable share of the memory.
    __slots__ = (
        "_done",
        "_drained",
        "_frames",
        "_frames_max",
        "_sending",
        "_writer",
        "audience",
        "buffers",
        "claims",
        "closing",
        "codec",
        "cursors",
        "errors",
        "frames",
        "id",
        "metrics",
        "role",
        "sessions",
        "subject",
        "tab_id",
        "tab_version",
        "tab_waiting",
        "tips",
        "tips_in_flight",
        "warned_at",
        "warning_seconds",
        "websocket",
        "welcomed",
    )

    def __init__(
        self,
        websocket: WebSocket,
        codec: Codec,
        claims: Claims,
        connection_id: str,
        *,
        send_queue_max: int,
        tips: TokenBucket,
        frames: TokenBucket,
        metrics: Metrics,
        warning_seconds: tuple[int, ...] = (),
    ) -> None:
        self.websocket = websocket
        self.codec = codec
        self.claims = claims
        self.id = connection_id
        self.role = claims.role
        self.subject = claims.subject
        self.audience = Audience.PUBLIC if claims.role is Role.VIEWER else Audience.OWNER
        self.tips = tips
        self.frames = frames
        self.metrics = metrics
        #: The viewer's current tab and the newest version it was sent.
        self.tab_id: str | None = None
        self.tab_version = 0
        self.welcomed = False
        #: Tips of this connection waiting for Redis. While there are any, tab pushes wait too:
        #: the reply carries the balance, so a push of the same version would be a repeat.
        self.tips_in_flight = 0
        self.tab_waiting: TabView | None = None
        #: Room → (ms, seq) of the last event delivered.
        self.cursors: dict[str, tuple[int, int]] = {}
        #: Room → live events held back while the connection catches up on that room.
        self.buffers: dict[str, list[LiveEvent]] = {}
        #: Sessions this viewer started here: session id → its ref (for viewer_left).
        self.sessions: dict[str, SessionRef] = {}
        #: Low-credit warning points (seconds left), and the smallest one already warned of.
        self.warning_seconds = warning_seconds
        self.warned_at: int | None = None
        self.errors = 0
        self.closing = False
        #: Frames waiting to be sent (made on first use: most connections never queue one).
        self._frames: deque[bytes | str | _Close] | None = None
        self._frames_max = send_queue_max
        #: The task sending queued frames; None while the queue is empty.
        self._writer: asyncio.Task[None] | None = None
        #: Set once the connection is closed or over: nothing more is sent.
        self._done = False
        #: Set by the writer whenever the queue shrinks, for :meth:`wait_for_room`.
        self._drained: asyncio.Event | None = None
        #: True while a frame is being sent, by the writer or by a direct reply (one at a time:
        #: a direct reply goes out only when nothing is queued or being sent).
        self._sending = False

    @property
    def send_queue_max(self) -> int:
        """How many frames the send queue holds at most."""
        return self._frames_max

    @property
    def currency(self) -> str:
        """The currency of the viewer's tab (empty for other roles)."""
        return self.claims.currency

    def send(self, message: ServerMessage, kind: str) -> None:
        """Encode ``message`` and queue it (``kind`` labels the metric)."""
        self.metrics.count_out(kind)
        self.send_frame(encode(message, self.codec))

    async def reply(self, message: ServerMessage, kind: str) -> None:
        """Send the answer to a client's message from its reader: at once when nothing is
        queued (one task hop less on the hot path), else behind what is queued."""
        self.metrics.count_out(kind)
        frame = encode(message, self.codec)
        if self.closing or self._frames or self._sending:
            self.send_frame(frame)
            return
        self._sending = True
        try:
            if self.codec.binary:
                await self.websocket.send({"type": "websocket.send", "bytes": frame})
            else:
                await self.websocket.send({"type": "websocket.send", "text": frame})
        except GONE:  # the client went away mid-send
            self.closing = True
        finally:
            self._sending = False
        if self._frames and self._writer is None and not self._done:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    def send_frame(self, frame: bytes | str) -> None:
        """Queue an encoded frame; drop the connection if its queue is full."""
        if self.closing:
            return
        if not self._queue(frame):
            self.metrics.slow_consumers.inc()
            log.info("slow consumer dropped", extra={"fields": {"connection": self.id}})
            self.abort(CloseCode.SLOW_CONSUMER, "slow consumer")

    def _queue(self, item: bytes | str | _Close) -> bool:
        """Append ``item`` and make sure it will be sent (by a writer, or after the direct reply
        being sent); False if the queue is full."""
        frames = self._frames
        if frames is None:
            frames = self._frames = deque()
        elif len(frames) >= self._frames_max:
            return False
        frames.append(item)
        if self._writer is None and not self._sending:
            self._writer = asyncio.get_running_loop().create_task(self._write())
        return True

    async def wait_for_room(self, frames: int) -> bool:
        """Wait until the send queue can take ``frames`` more frames; False once the connection
        is closing. A backlog is sent a page at a time behind this wait, so however long it is
        it never overflows the queue: the client's reading paces it."""
        frames = min(frames, self._frames_max)
        while not self.closing and not self._done:
            queued = len(self._frames) if self._frames is not None else 0
            if queued + frames <= self._frames_max:
                return True
            drained = self._drained
            if drained is None:
                drained = self._drained = asyncio.Event()
            drained.clear()
            await drained.wait()
        return False

    def _signal_drained(self) -> None:
        if self._drained is not None:
            self._drained.set()

    def offer_tab(self, tab: TabView) -> None:
        """Push a tab balance to a viewer if it is news: a newer version of its tab, or a new
        open tab (after the old one was settled)."""
        if not self.welcomed or self.tips_in_flight:
            waiting = self.tab_waiting
            if waiting is None or waiting.tab_id != tab.tab_id or tab.version >= waiting.version:
                self.tab_waiting = tab
            return
        if tab.tab_id == self.tab_id:
            if tab.version <= self.tab_version:
                return
        elif tab.state != "open":
            return
        self.tab_id = tab.tab_id
        self.tab_version = tab.version
        self.send(TabUpdate(tab=tab), "tab")
        self.check_warning(tab)

    def check_warning(self, tab: TabView) -> None:
        """Warn the viewer once per warning point crossed as the seconds left run down."""
        left = tab.seconds_left
        crossed = [point for point in self.warning_seconds if left is not None and left <= point]
        if not crossed:
            self.warned_at = None  # nothing burns, or the cap was raised: warn afresh later
            return
        point = min(crossed)
        if self.warned_at is None or point < self.warned_at:
            self.warned_at = point
            self.send(
                Warning(tab_id=tab.tab_id, seconds_left=left or 0, threshold_s=point), "warning"
            )

    def release_tab_push(self) -> None:
        """Send the tab push held back while welcoming or while tips were in flight."""
        waiting, self.tab_waiting = self.tab_waiting, None
        if waiting is not None:
            self.offer_tab(waiting)

    def close_soon(self, code: int, reason: str = "") -> None:
        """Send what is queued, then close with ``code``."""
        if self.closing:
            return
        if not self._queue(_Close(code, reason)):
            self.abort(code, reason)
            return
        self.closing = True

    def abort(self, code: int, reason: str = "") -> None:
        """Close with ``code`` now, dropping whatever is queued."""
        if self._done:
            return
        self.closing = True
        self._done = True
        self._frames = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.cancel()
        self._signal_drained()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):  # the peer may be gone already
            await self.websocket.close(code, reason)

    async def _write(self) -> None:
        send = self.websocket.send
        binary = self.codec.binary
        try:
            while frames := self._frames:
                frame = frames.popleft()
                if isinstance(frame, _Close):
                    self._done = True
                    self._frames = None
                    await self._close(frame.code, frame.reason)
                    return
                self._sending = True
                try:
                    if binary:
                        await send({"type": "websocket.send", "bytes": frame})
                    else:
                        await send({"type": "websocket.send", "text": frame})
                finally:
                    self._sending = False
                self._signal_drained()
            self._frames = None  # drained: an idle connection keeps no queue
        except GONE:  # the client went away mid-send
            self.closing = True
            self._frames = None
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None
            self._signal_drained()

    async def flush(self, timeout_s: float = FLUSH_S_MAX) -> None:
        """Wait, at most ``timeout_s``, for the writer to send what is queued (and the close
        frame :meth:`close_soon` queued): without this the app would return first, the
        connection would end with 1006, and the client would never learn why it was closed."""
        writer = self._writer
        if writer is None or self._done:
            return
        await asyncio.wait({writer}, timeout=timeout_s)

    async def stop(self) -> None:
        """Stop the writer (the connection is over)."""
        self.closing = True
        self._done = True
        self._frames = None
        writer, self._writer = self._writer, None
        self._signal_drained()
        if writer is not None:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
