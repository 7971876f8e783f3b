"""What a handler has at hand: the app, the connection, and one way each to answer.

A :class:`Context` lives as long as its connection. It holds the connection's *error budget*
(invalid and rate-limited frames past which the connection is closed with 4029, sized in
:mod:`server.admission`), the helpers every handler answers with, and the background pushes
the connection's handlers start (so nothing lives in a module global).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, Protocol, TypeVar

from clients.protocol import CloseCode, Error, ErrorCode
from metering.outcomes import Code, TabRef
from server.connection import Connection
from server.ratelimit import TokenBucket
from server.runtime import Runtime

log = logging.getLogger("tipmeter.ws")

#: How long a closing connection waits for its handlers' pushes (a session's end, say) to be
#: queued before it sends what is queued and closes; past it they are cancelled.
PUSHES_WAIT_S_MAX: Final = 2.0

#: The money core's answers that mean "this tab is gone or no longer takes spending": the
#: customer may have a new open tab to try (the old one was settled and another opened).
_TAB_GONE: Final = frozenset({Code.TAB_NOT_FOUND, Code.TAB_NOT_OPEN})

#: The money core's refusals (of a tip, a session, a price) as protocol error codes.
ERRORS: Final = {
    Code.INVALID_ID: ErrorCode.INVALID_ID,
    Code.INVALID_AMOUNT: ErrorCode.INVALID_AMOUNT,
    Code.INVALID_CURRENCY: ErrorCode.INVALID_CURRENCY,
    Code.INVALID_FIELD: ErrorCode.INVALID_FIELD,
    Code.INVALID_KIND: ErrorCode.INVALID_KIND,
    Code.AMOUNT_OUT_OF_RANGE: ErrorCode.AMOUNT_OUT_OF_RANGE,
    Code.TAB_NOT_FOUND: ErrorCode.NO_OPEN_TAB,
    Code.TAB_NOT_OPEN: ErrorCode.TAB_NOT_OPEN,
    Code.CURRENCY_MISMATCH: ErrorCode.CURRENCY_MISMATCH,
    Code.OVER_CAP: ErrorCode.OVER_CAP,
    Code.LINES_FULL: ErrorCode.LINES_FULL,
    Code.SESSIONS_FULL: ErrorCode.SESSIONS_FULL,
    Code.INSUFFICIENT_CAP: ErrorCode.INSUFFICIENT_CAP,
    Code.SESSION_NOT_FOUND: ErrorCode.SESSION_NOT_FOUND,
    Code.BUSY: ErrorCode.BUSY,
    Code.ID_REUSED: ErrorCode.ID_REUSED,
}

_EXPLANATIONS: Final = {
    ErrorCode.INSUFFICIENT_CAP: "the first charge does not fit under the cap; raise the cap",
    ErrorCode.SESSIONS_FULL: "this tab funds as many sessions as it may",
    ErrorCode.INVALID_KIND: "kind must be private, spy or cam2cam",
    ErrorCode.MODEL_OFFLINE: "the model is not online",
    ErrorCode.NO_OPEN_TAB: "the customer has no open tab in this currency",
    ErrorCode.TAB_NOT_OPEN: "the tab is being settled; nothing more can be spent on it",
    ErrorCode.OVER_CAP: "the tip does not fit under the tab's cap; raise the cap",
    ErrorCode.AMOUNT_OUT_OF_RANGE: "the amount is outside the allowed tip range",
    ErrorCode.ID_REUSED: "this id was used for another tip",
    ErrorCode.LINES_FULL: "the tab holds as many lines as it may; settle it",
    ErrorCode.BUSY: "the server is catching up; retry with the same id",
}


def explain(code: ErrorCode) -> str:
    """The human sentence sent with a refusal of ``code``."""
    return _EXPLANATIONS.get(code, str(code).replace("_", " "))


def retry_after_ms(seconds: float) -> int:
    """A wait in whole milliseconds, rounded up and at least 1 (``retry_after_ms``)."""
    return max(1, int(seconds * 1000 + 0.999))


class _Outcome(Protocol):
    """A money-core result that says what happened (tips' and sessions' results)."""

    @property
    def code(self) -> Code: ...


R = TypeVar("R", bound=_Outcome)


class Context:
    """One connection's side of the dispatch (see :mod:`server.dispatch`)."""

    __slots__ = ("closing", "conn", "errors", "pushes", "rt")

    def __init__(self, rt: Runtime, conn: Connection, errors: TokenBucket) -> None:
        self.rt = rt
        self.conn = conn
        #: The error budget (see :mod:`server.admission`).
        self.errors = errors
        #: Set once the error budget is spent: the reader stops and the connection closes.
        self.closing = False
        self.pushes: set[asyncio.Task[None]] = set()

    @staticmethod
    def now_s() -> float:
        """The event loop's clock, the one the connection's token buckets run on."""
        return asyncio.get_running_loop().time()

    def refuse(self, code: ErrorCode, message: str, **extra: object) -> None:
        """Answer with an error (a business refusal: it costs nothing from the error budget)."""
        self.rt.metrics.count_error(code.value)
        self.conn.send(Error(code=str(code), message=message, **extra), "error")  # type: ignore[arg-type]

    def fault(self, code: ErrorCode, message: str, **extra: object) -> None:
        """Answer a frame the client should not have sent, and charge it to the error budget;
        once the budget is spent the connection is closed (4029) after what is queued."""
        self.refuse(code, message, **extra)
        if self.errors.take(self.now_s()):
            self.conn.close_soon(CloseCode.TOO_MANY_ERRORS, "too many errors")
            self.closing = True

    def throttled(self, bucket: TokenBucket, what: str, message_id: str | None = None) -> bool:
        """Take a token from ``bucket``; if there is none, answer ``rate_limited`` with the wait
        (charged to the error budget) and return True: the frame is not acted on."""
        wait_s = bucket.take(self.now_s())
        if not wait_s:
            return False
        self.fault(
            ErrorCode.RATE_LIMITED, what, id=message_id, retry_after_ms=retry_after_ms(wait_s)
        )
        return True

    async def on_current_tab(self, act: Callable[[TabRef], Awaitable[R]]) -> tuple[str, R] | None:
        """Run ``act`` on the connection's tab and return the tab's id and the result.

        If the connection knows no tab, or ``act`` finds it gone or no longer open (it may have
        been settled and a new one opened), ``act`` runs once more on the customer's current
        open tab, which the connection adopts. None: the customer has no open tab to try.
        """
        conn = self.conn
        tab_id = conn.tab_id
        result: R | None = None
        if tab_id is not None:
            result = await act(TabRef(conn.subject, tab_id))
            if result.code not in _TAB_GONE:
                return tab_id, result
        fresh = await self.rt.meter.tabs.find_open(conn.subject, conn.currency)
        if fresh is None or fresh == tab_id:
            return None if tab_id is None or result is None else (tab_id, result)
        conn.tab_id, conn.tab_version = fresh, 0
        return fresh, await act(TabRef(conn.subject, fresh))

    def push_soon(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` (a push to this connection) in the background, held until it is done."""
        task = asyncio.get_running_loop().create_task(work)
        self.pushes.add(task)
        task.add_done_callback(self.pushes.discard)

    async def finish_pushes(self) -> None:
        """Let the pushes under way be queued (bounded by ``PUSHES_WAIT_S_MAX``), then cancel
        the rest: the connection is closing."""
        if not self.pushes:
            return
        _, late = await asyncio.wait(set(self.pushes), timeout=PUSHES_WAIT_S_MAX)
        for task in late:
            task.cancel()
