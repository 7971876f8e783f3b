"""One PostgreSQL connection per server process that LISTENs for the ledger's notifications
and hands each to the part of the server that follows its channel.

Theory of operation. A change a connected client must see (a refund waiting for a model's
consent, a member's subscription) is written to PostgreSQL together with a ``pg_notify`` on
its channel, in the same transaction: the notification is delivered when the change commits,
to every listening process, and never for a change rolled back. Each server process holds one
connection of its own for that (not a pool connection: it is held for the process's life);
:class:`PgListener` LISTENs there on every :class:`Channel`'s name and passes each payload to
that channel's :meth:`Channel.notified`, one at a time, in the order PostgreSQL delivers them.

A notification sent while the connection was down is lost to this process, so every channel
reads again what its clients hold after each (re)connect (:meth:`Channel.resync`): a channel
sends whole state read from the ledger, never a patch, so a push repeated or reordered is
harmless and a lost one costs nothing. Every ``idle_s`` without a notification, and at least
that often under a stream of them, each channel's :meth:`Channel.idle` runs (the consent
channel expires unanswered requests there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Final, Protocol

import psycopg
from psycopg import sql

from settlement.ledger.errors import LedgerError

log = logging.getLogger("tipmeter.listen")

#: How often the channels' idle work runs at least.
IDLE_S_DEFAULT: Final = 5.0
#: Backoff between reconnects of the listening connection (doubling).
RECONNECT_S_MIN: Final = 0.2
RECONNECT_S_MAX: Final = 10.0


class Channel(Protocol):
    """One part of the server that follows a notification channel."""

    #: The PostgreSQL channel's name.
    channel: str

    async def resync(self) -> None:
        """(Re)connected: send every client this part follows its state again."""

    async def notified(self, payload: str) -> None:
        """A notification on the channel (what changed; read the rest from the ledger)."""

    async def idle(self) -> None:
        """Periodic work (every ``idle_s`` at least)."""


class PgListener:
    """The process's listening connection and the channels it serves."""

    def __init__(
        self, url: str, channels: Sequence[Channel], *, idle_s: float = IDLE_S_DEFAULT
    ) -> None:
        self.url = url
        self.channels = {c.channel: c for c in channels}
        self.idle_s = idle_s

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set, reconnecting with backoff."""
        backoff = RECONNECT_S_MIN
        while not stop.is_set():
            try:
                await self._listen(stop)
                backoff = RECONNECT_S_MIN
                continue
            except (psycopg.Error, LedgerError, OSError) as exc:
                log.warning("listener lost", extra={"fields": {"error": repr(exc)}})
            except Exception:
                # A bug must not end the live pushes for good: logged, then listen again.
                log.exception("listener failed")
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, RECONNECT_S_MAX)

    async def _listen(self, stop: asyncio.Event) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            for name in self.channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
            # Anything notified while not listening: every channel's clients read again.
            for channel in self.channels.values():
                await channel.resync()
            idle_at = time.monotonic() + self.idle_s
            while not stop.is_set():
                async for notice in conn.notifies(timeout=self.idle_s):
                    follower = self.channels.get(notice.channel)
                    if follower is not None:
                        await follower.notified(notice.payload)
                    if stop.is_set():
                        return
                    if time.monotonic() >= idle_at:
                        break  # a stream of notifications must not starve the idle work
                for channel in self.channels.values():
                    await channel.idle()
                idle_at = time.monotonic() + self.idle_s
