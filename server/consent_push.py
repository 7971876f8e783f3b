"""The model's consent to refunds, live on her console (server → model push, and her answer).

Theory of operation. A refund that needs the models' consent is recorded in PostgreSQL with
the rooms it asks (``refund_consents``, :mod:`settlement.refunds.store`); the same
transaction sends each room's name on the channel ``CONSENT_CHANNEL`` (``pg_notify``,
delivered when it commits), and so does every answer and every timeout. The process's
listening connection (:class:`server.pg_listen.PgListener`, which this class serves as one
:class:`~server.pg_listen.Channel`) hands it the names. When a room it has a console for is
named, it reads that room's list from the
ledger and sends it whole (``refunds_waiting``) to each of the room's consoles; a console gets
its list as soon as it is welcomed (unless it is empty: a console starts with an empty list).
The list is read, never patched, so a push repeated or reordered is harmless, and a
notification lost while the listening connection was down costs nothing: after every
(re)connect every room's list is sent again.

The same loop answers for the models who did not answer in time: every ``SWEEP_S_DEFAULT`` (the
listener's idle interval) it runs
:meth:`~settlement.refunds.service.Refunds.expire_consents` (decline, or escalate to support:
``TIPMETER_REFUND_CONSENT_UNANSWERED``), whose transactions notify in turn. Every process
sweeps; each refund is expired once, under its lock.

Her answer comes back on the console's WebSocket (``refund_answer``) and is recorded with the
room and ``model:<room>`` as who decided (:meth:`ConsentPush.answer`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from clients.protocol import Error as ErrorMessage
from clients.protocol import ErrorCode, RefundAnswer, RefundsWaiting, RefundWaiting, Result
from clients.tickets import Role
from server.connection import Connection
from settlement.ledger.errors import LedgerError
from settlement.refunds.errors import RefundNotFound
from settlement.refunds.service import Refunds
from settlement.refunds.store import CONSENT_CHANNEL

log = logging.getLogger("tipmeter.consent")

#: How often each process declines (or escalates) the requests nobody answered in time.
SWEEP_S_DEFAULT: Final = 5.0
#: Overdue requests one sweep handles at most (the next sweep takes the rest).
SWEEP_BATCH_MAX: Final = 100
#: Refunds one console's list holds at most (the oldest first; the protocol's bound).
LIST_MAX: Final = 100


class ConsentPush:
    """The consoles of this process, by room, and the channel that keeps their lists current."""

    channel = CONSENT_CHANNEL

    def __init__(
        self,
        url: str,
        service: Callable[[], Refunds],
    ) -> None:
        self.url = url
        self.service = service
        self.rooms: dict[str, set[Connection]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def join(self, conn: Connection) -> None:
        """A model's console was welcomed: follow her room, and send her list now."""
        if conn.role is not Role.MODEL:
            return
        self.rooms.setdefault(conn.subject, set()).add(conn)
        self._spawn(self.push(conn.subject, only=conn))

    def leave(self, conn: Connection) -> None:
        """A console closed."""
        consoles = self.rooms.get(conn.subject)
        if consoles is not None:
            consoles.discard(conn)
            if not consoles:
                del self.rooms[conn.subject]

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def push(self, room: str, *, only: Connection | None = None) -> None:
        """Send ``room``'s list to its consoles; to ``only`` (a console just welcomed, which
        starts with an empty list), only if the list is not empty."""
        consoles = [only] if only is not None else list(self.rooms.get(room, ()))
        if not consoles:
            return
        try:
            waiting = await self.service().waiting_for(room, LIST_MAX)
        except LedgerError as exc:
            # The next notification, or the reconnect after the ledger is back, sends it again.
            log.warning("consent list unavailable", extra={"fields": {"error": repr(exc)}})
            return
        except Exception:
            log.exception("consent list failed", extra={"fields": {"room": room}})
            return
        if only is not None and not waiting:
            return
        message = RefundsWaiting(
            room=room,
            refunds={
                r["refund_id"]: RefundWaiting(
                    currency=r["currency"],
                    amount_minor=r["amount_minor"],
                    reason=r["reason"],
                    origin=r["origin"],
                    requested_at_ms=r["requested_at_ms"],
                    answer_by_ms=r["answer_by_ms"],
                    lines={line["line_id"]: line["amount_minor"] for line in r["lines"]},
                    note=r["note"],
                )
                for r in waiting
            },
        )
        for conn in consoles:
            conn.send(message, "refunds_waiting")

    async def answer(self, conn: Connection, message: RefundAnswer) -> None:
        """The model's answer from her console: recorded for her room, answered once."""
        if conn.role is not Role.MODEL:
            conn.send(
                ErrorMessage(
                    code=str(ErrorCode.NOT_ALLOWED),
                    message="only the room's model answers",
                    id=message.id,
                ),
                "error",
            )
            return
        room = conn.subject
        try:
            answer = await self.service().consent(
                message.refund_id, accept=message.accept, by=f"model:{room}", room=room
            )
        except RefundNotFound as exc:
            conn.send(
                ErrorMessage(code=str(ErrorCode.REFUND_NOT_FOUND), message=str(exc), id=message.id),
                "error",
            )
            return
        except LedgerError:
            log.warning("refund answer failed: the ledger is unavailable")
            conn.send(
                ErrorMessage(code=str(ErrorCode.UNAVAILABLE), message="retry later", id=message.id),
                "error",
            )
            return
        status = "applied" if answer.created else "duplicate"
        conn.send(Result(id=message.id, status=status), "result")

    # -- the listener's channel (server.pg_listen) ------------------------------------------

    async def resync(self) -> None:
        """(Re)connected: anything notified while not listening — every console's list again."""
        for room in list(self.rooms):
            await self.push(room)

    async def notified(self, payload: str) -> None:
        """A room's list changed."""
        await self.push(payload)

    async def idle(self) -> None:
        """Answer for the models who did not answer in time."""
        await self.service().expire_consents(SWEEP_BATCH_MAX)

    async def aclose(self) -> None:
        """Stop the pushes under way (at shutdown: the consoles are closing too)."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
