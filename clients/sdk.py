"""The Python SDK: an asyncio client for tipmeter's WebSocket protocol.

Theory of operation. :class:`Client` keeps one WebSocket open and, when it drops (network, a
server deploy that said ``drain``, a dead server), opens a new one after a backoff with full
jitter, with a fresh ticket from the ticket source. On every new connection it follows its rooms
again *after the last event it saw* (so no event is missed or repeated), and sends again every
operation not yet answered, *with the same id*: the server applies an operation at most once, so
a tip sent twice is paid once, and the second answer is ``duplicate`` with the original result.

Frames are encoded and decoded by :mod:`clients.protocol`; this module only moves them.

Example::

    async def main() -> None:
        async with Client("ws://127.0.0.1:8000/ws", ticket=fetch_ticket) as client:
            receipt = await client.tip("alice", 500, "USD", message="hi")
            print(receipt.tab.remaining_minor)
            await client.subscribe("alice")
            async for message in client.messages():
                print(message)

``fetch_ticket`` is an async function that asks your backend for a ticket (tickets are single
use, so reconnecting needs a new one); a plain string works for one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from clients.errors import Disconnected, HandshakeRefused, Refused
from clients.protocol import (
    Buy,
    ClientMessage,
    Codec,
    Decline,
    Drain,
    Error,
    ErrorCode,
    Fulfil,
    Invalid,
    Ping,
    Pong,
    RateView,
    RefundAnswer,
    RefundsWaiting,
    Result,
    RoomEvent,
    ServerMessage,
    SessionStart,
    SessionStop,
    SessionUpdate,
    SetRates,
    Subscribe,
    Subscribed,
    SubscriptionUpdate,
    TabUpdate,
    TabView,
    Tip,
    Unsubscribe,
    Unsubscribed,
    Warning,
    Welcome,
    decode_server,
    encode,
)

log = logging.getLogger("tipmeter.sdk")

TicketSource = str | Callable[[], Awaitable[str]]

#: Reconnect delays: full jitter between 0 and a bound that doubles from MIN to MAX.
BACKOFF_S_MIN: Final = 0.2
BACKOFF_S_MAX: Final = 15.0
#: Messages kept for :meth:`Client.messages` before the oldest are dropped.
MESSAGES_MAX: Final = 1_000
#: Operations waiting for an answer at most.
PENDING_MAX: Final = 1_000
#: Times an operation is sent again after a retryable error (busy, unavailable …).
RETRIES_MAX: Final = 5
#: Largest frame the client accepts from the server.
SERVER_FRAME_BYTES_MAX: Final = 1_048_576


def new_id(prefix: str = "op") -> str:
    """Mint an operation id (keep it until the answer comes)."""
    return f"{prefix}-{secrets.token_urlsafe(12)}"


def with_ticket(url: str, ticket: str) -> str:
    """The WebSocket URL carrying ``ticket`` as its query parameter."""
    return f"{url}{'&' if '?' in url else '?'}ticket={quote(ticket, safe='')}"


def handshake_error(exc: InvalidHandshake) -> HandshakeRefused:
    """The SDK's exception for a refused handshake, with the server's code when it sent one."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        code, message = "http_error", ""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            error = orjson.loads(bytes(response.body or b""))["error"]
            code, message = str(error["code"]), str(error["message"])
        return HandshakeRefused(response.status_code, code, message)
    return HandshakeRefused(0, "handshake_failed", str(exc))


A = TypeVar("A")


def expect(answer: object, kind: type[A]) -> A:
    """``answer`` if it is a ``kind``; Disconnected otherwise (an answer out of turn)."""
    if not isinstance(answer, kind):
        raise Disconnected(f"unexpected answer {answer!r}")
    return answer


class Connection:
    """What both clients (this asyncio one and :class:`clients.sync.SyncClient`) keep of a
    connection: where it goes, how it speaks, its welcome, and the viewer's tab as last seen."""

    def __init__(
        self, url: str, *, codec: Codec, origin: str | None, open_timeout_s: float
    ) -> None:
        self.url = url
        self.codec = codec
        self.origin = origin
        self.open_timeout_s = open_timeout_s
        self.welcome: Welcome | None = None
        #: The viewer's tab as last seen (welcome, results, refusals and pushes): a newer
        #: ``version``, or another ``tab_id`` (a new tab), replaces it.
        self.tab: TabView | None = None

    def _connect_args(self, ticket: str) -> dict[str, Any]:
        """The arguments of websockets' ``connect`` (asyncio and sync alike) for ``ticket``:
        no compression, the server's frame bound."""
        return {
            "uri": with_ticket(self.url, ticket),
            "subprotocols": [Subprotocol(self.codec.subprotocol)],
            "origin": Origin(self.origin) if self.origin is not None else None,
            "compression": None,
            "max_size": SERVER_FRAME_BYTES_MAX,
            "open_timeout": self.open_timeout_s,
        }

    def _see_tab(self, tab: TabView) -> None:
        current = self.tab
        if current is None or current.tab_id != tab.tab_id or tab.version > current.version:
            self.tab = tab


@dataclass
class _Pending:
    message: ClientMessage
    future: asyncio.Future[Result | Subscribed | Unsubscribed | Pong]
    retries: int = 0


@dataclass
class Stats:
    """Counters of what happened on the client's connections."""

    connects: int = 0
    reconnects: int = 0
    resent: int = 0
    messages_dropped: int = 0


class Client(Connection):
    """One viewer's, model's or broadcast tool's connection, kept open across failures."""

    def __init__(
        self,
        url: str,
        ticket: TicketSource,
        *,
        codec: Codec = Codec.MSGPACK,
        origin: str | None = None,
        reconnect: bool = True,
        open_timeout_s: float = 10.0,
        messages_max: int = MESSAGES_MAX,
        pending_max: int = PENDING_MAX,
    ) -> None:
        super().__init__(url, codec=codec, origin=origin, open_timeout_s=open_timeout_s)
        self._ticket = ticket
        self.reconnect = reconnect
        self.pending_max = pending_max
        #: Rooms followed, with the id of the last event received from each (None: none yet).
        self.cursors: dict[str, str | None] = {}
        self.stats = Stats()
        self._ws: ClientConnection | None = None
        self._pending: dict[str, _Pending] = {}
        self._messages: asyncio.Queue[ServerMessage] = asyncio.Queue(messages_max)
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = asyncio.Event()
        self._reconnect_after_s: float | None = None

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- connection -------------------------------------------------------------------------

    async def connect(self) -> Welcome:
        """Open the connection; raise HandshakeRefused if the server refuses it."""
        welcome = await self._open()
        self._supervisor = asyncio.create_task(self._supervise(), name="tipmeter client")
        return welcome

    async def close(self) -> None:
        """Close the connection; operations still waiting fail with Disconnected."""
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._fail_pending(Disconnected("the client was closed"))

    async def _next_ticket(self) -> str:
        if isinstance(self._ticket, str):
            return self._ticket
        return await self._ticket()

    async def _open(self) -> Welcome:
        ticket = await self._next_ticket()
        try:
            ws = await connect(**self._connect_args(ticket))
        except InvalidHandshake as exc:
            raise handshake_error(exc) from exc
        try:
            first = decode_server(await ws.recv(), self.codec)
        except ConnectionClosed as exc:
            raise Disconnected(f"closed before the welcome: {exc}") from exc
        if not isinstance(first, Welcome):
            await ws.close()
            raise Disconnected(f"expected a welcome, got {first!r}")
        self._ws = ws
        self.welcome = first
        if first.tab is not None:
            self.tab = first.tab
        self.stats.connects += 1
        # Follow the rooms again from where we were, and send again what is unanswered.
        for room, cursor in self.cursors.items():
            await self._send(Subscribe(room=room, after=cursor, id=new_id("resub")))
        for pending in list(self._pending.values()):
            self.stats.resent += 1
            await self._send(pending.message)
        self._connected.set()
        return first

    async def _supervise(self) -> None:
        backoff = BACKOFF_S_MIN
        while not self._closing:
            await self._read()
            self._connected.clear()
            if self._stopped():  # close() may have run while we read
                return
            if not self.reconnect:
                self._fail_pending(Disconnected("the connection closed"))
                return
            while not self._closing:
                delay = self._reconnect_after_s
                self._reconnect_after_s = None
                await asyncio.sleep(delay if delay is not None else random.uniform(0, backoff))
                try:
                    await self._open()
                except HandshakeRefused as refused:
                    log.warning("reconnect refused: %s", refused)
                    if refused.needs_new_ticket and isinstance(self._ticket, str):
                        self._fail_pending(Disconnected(f"cannot reconnect: {refused}"))
                        return
                except (OSError, TimeoutError, Disconnected) as exc:
                    log.info("reconnect failed: %s", exc)
                else:
                    self.stats.reconnects += 1
                    backoff = BACKOFF_S_MIN
                    break
                backoff = min(backoff * 2, BACKOFF_S_MAX)

    def _stopped(self) -> bool:
        return self._closing

    async def _read(self) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            async for frame in ws:
                self._handle(decode_server(frame, self.codec))
        except ConnectionClosed:
            pass

    def _handle(self, message: ServerMessage | Invalid) -> None:
        match message:
            case Invalid():
                log.warning("invalid frame from the server: %s", message.message)
            case Result() | Subscribed() | Unsubscribed() | Pong():
                if isinstance(message, Result) and message.tab is not None:
                    self._see_tab(message.tab)
                pending = self._pending.pop(message.id, None) if message.id else None
                if pending is not None and not pending.future.done():
                    pending.future.set_result(message)
                elif isinstance(message, Subscribed):
                    self._offer(message)
            case Error():
                self._on_error(message)
            case RoomEvent():
                if message.room in self.cursors:
                    self.cursors[message.room] = message.id
                self._offer(message)
            case TabUpdate():
                self._see_tab(message.tab)
                self._offer(message)
            case SessionUpdate() | Warning() | RefundsWaiting() | SubscriptionUpdate():
                self._offer(message)
            case Drain():
                self._reconnect_after_s = message.reconnect_after_ms / 1000
                self._offer(message)
            case Welcome():
                self._offer(message)

    def _on_error(self, error: Error) -> None:
        pending = self._pending.get(error.id) if error.id else None
        if pending is None:
            self._offer(error)
            return
        if error.tab is not None:
            self._see_tab(error.tab)
        retryable = error.code in {c.value for c in ErrorCode if c.retryable}
        if retryable and pending.retries < RETRIES_MAX:
            pending.retries += 1
            delay_s = (error.retry_after_ms or 100 * 2**pending.retries) / 1000
            asyncio.get_running_loop().call_later(delay_s, self._resend, pending.message)
            return
        del self._pending[error.id or ""]
        if not pending.future.done():
            pending.future.set_exception(Refused(error.code, error.message, error.tab))

    def _resend(self, message: ClientMessage) -> None:
        if self._ws is not None and getattr(message, "id", None) in self._pending:
            asyncio.get_running_loop().create_task(self._send_quietly(message))

    async def _send_quietly(self, message: ClientMessage) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(message)

    def _offer(self, message: ServerMessage) -> None:
        if self._messages.full():
            self._messages.get_nowait()
            self.stats.messages_dropped += 1
        self._messages.put_nowait(message)

    def _fail_pending(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if not item.future.done():
                item.future.set_exception(error)

    async def _send(self, message: ClientMessage) -> None:
        if self._ws is None:
            raise Disconnected("not connected")
        await self._ws.send(encode(message, self.codec))

    async def _request(
        self, message: ClientMessage, op_id: str
    ) -> Result | Subscribed | Unsubscribed | Pong:
        if self._closing:
            raise Disconnected("the client was closed")
        if op_id in self._pending:
            raise ValueError(f"operation {op_id} is already waiting for its answer")
        if len(self._pending) >= self.pending_max:
            raise Refused(ErrorCode.BUSY.value, f"more than {self.pending_max} operations pending")
        future: asyncio.Future[Result | Subscribed | Unsubscribed | Pong] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[op_id] = _Pending(message, future)
        if self._connected.is_set():
            # If the socket just died, the reconnect sends it again (same id).
            with contextlib.suppress(ConnectionClosed, Disconnected):
                await self._send(message)
        return await future

    # -- operations -------------------------------------------------------------------------

    async def tip(
        self,
        room: str,
        amount_minor: int,
        currency: str,
        *,
        message: str = "",
        anonymous: bool = False,
        tip_id: str | None = None,
    ) -> Result:
        """Tip ``amount_minor`` to ``room``; the answer (``applied`` or ``duplicate``).

        Raises Refused with the server's code (``over_cap``, ``no_open_tab`` …). Pass
        ``tip_id`` to retry a tip whose answer you lost: it is applied at most once.
        """
        op_id = tip_id or new_id("tip")
        tip = Tip(op_id, room, amount_minor, currency, message, anonymous)
        return expect(await self._request(tip, op_id), Result)

    async def start_session(self, room: str, kind: str, *, session_id: str | None = None) -> Result:
        """Start a metered show (``private``, ``spy`` or ``cam2cam``) with ``room``'s model.

        The answer's ``session`` has the price; its end comes as a ``session`` message. Raises
        Refused (``insufficient_cap`` with how much more the cap needs, ``model_offline`` …).
        """
        op_id = session_id or new_id("show")
        return expect(await self._request(SessionStart(op_id, room, kind), op_id), Result)

    async def stop_session(self, session_id: str) -> Result:
        """Stop a session (the viewer who started it, or the room's model).

        For a session that had ended already (its ``session`` message may have gone to a lost
        connection) the answer is ``duplicate`` with the session as it ended: its
        ``end_reason`` says how the show ended.
        """
        op_id = new_id("stop")
        return expect(await self._request(SessionStop(op_id, session_id), op_id), Result)

    async def set_rates(self, rates: dict[str, RateView]) -> Result:
        """Set the room's prices by kind of show (models only, within the site's bounds)."""
        op_id = new_id("rates")
        return expect(await self._request(SetRates(op_id, rates), op_id), Result)

    async def answer_refund(self, refund_id: str, accept: bool) -> Result:
        """Accept or decline a refund waiting for the model's consent (models only; the
        refunds come in :class:`~clients.protocol.RefundsWaiting` through :meth:`messages`).
        ``duplicate``: her room had answered before, or the refund no longer waits."""
        op_id = new_id("refund")
        answer = await self._request(
            RefundAnswer(id=op_id, refund_id=refund_id, accept=accept), op_id
        )
        if not isinstance(answer, Result):
            raise Disconnected(f"unexpected answer {answer!r}")
        return answer

    # Purchases from a model's catalog (issue 17, docs/purchases.md).

    async def buy(
        self,
        room: str,
        item_id: str,
        *,
        message: str = "",
        anonymous: bool = False,
        purchase_id: str | None = None,
    ) -> Result:
        """Buy ``item_id`` of ``room``'s catalog at its price; the answer's ``purchase`` says
        its state. Pass ``purchase_id`` to retry one whose answer you lost: it is charged at
        most once. Raises Refused (``over_cap``, ``item_not_found``, ``limit_reached`` …)."""
        op_id = purchase_id or new_id("buy")
        return expect(
            await self._request(Buy(op_id, room, item_id, message, anonymous), op_id), Result
        )

    async def fulfil(self, purchase_id: str) -> Result:
        """Mark a pending request of the model's room done (models only)."""
        op_id = new_id("done")
        return expect(await self._request(Fulfil(op_id, purchase_id), op_id), Result)

    async def decline(self, purchase_id: str) -> Result:
        """Decline a pending request of the model's room: it costs the viewer nothing."""
        op_id = new_id("decline")
        return expect(await self._request(Decline(op_id, purchase_id), op_id), Result)

    async def subscribe(self, room: str, after: str | None = None) -> Subscribed:
        """Follow ``room``'s events after ``after`` (None: from now); they arrive through
        :meth:`messages`, and following resumes after the last one on every reconnect."""
        op_id = new_id("sub")
        self.cursors[room] = after
        subscribe = Subscribe(room=room, after=after, id=op_id)
        return expect(await self._request(subscribe, op_id), Subscribed)

    async def unsubscribe(self, room: str) -> None:
        """Stop following ``room``."""
        self.cursors.pop(room, None)
        op_id = new_id("unsub")
        await self._request(Unsubscribe(room=room, id=op_id), op_id)

    async def ping(self) -> Pong:
        """A round trip through the server."""
        op_id = new_id("ping")
        return expect(await self._request(Ping(op_id), op_id), Pong)

    async def messages(self) -> AsyncIterator[ServerMessage]:
        """Everything the server pushes: room events, tab updates, drains, errors without an
        operation. At most ``messages_max`` wait; past that the oldest are dropped."""
        while not self._closing:
            yield await self._messages.get()

    async def next_message(self, timeout_s: float) -> ServerMessage | None:
        """The next pushed message, or None after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                return await self._messages.get()
        except TimeoutError:
            return None


# -- The backend's HTTP API: memberships (docs/subscriptions.md) ----------------------------

#: Longest one backend API call may take.
BACKEND_TIMEOUT_S_DEFAULT: Final = 15.0
#: Largest answer read from the backend API.
BACKEND_REPLY_BYTES_MAX: Final = 4 * 1024 * 1024


class Backend:
    """The cam-site backend's calls to tipmeter's HTTP API for memberships, with the API key.

    The standard library's HTTP client in a thread (the SDK adds no dependency for it). An error
    answer raises :class:`~clients.errors.Refused` with the API's code (``already_subscribed``,
    ``not_allowed`` …); no answer raises :class:`~clients.errors.Disconnected`.
    """

    def __init__(
        self, base_url: str, api_key: str, *, timeout_s: float = BACKEND_TIMEOUT_S_DEFAULT
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: object, headers: dict[str, str]) -> object:
        import urllib.error
        import urllib.request

        request = urllib.request.Request(  # noqa: S310 - the caller's own tipmeter URL
            self.base_url + path,
            data=orjson.dumps(body) if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                **headers,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310
                return orjson.loads(reply.read(BACKEND_REPLY_BYTES_MAX))
        except urllib.error.HTTPError as exc:
            try:
                error = orjson.loads(exc.read(BACKEND_REPLY_BYTES_MAX))["error"]
                code, message = str(error["code"]), str(error["message"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                code, message = f"http_{exc.code}", exc.reason
            raise Refused(code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Disconnected(f"no answer from {self.base_url}: {exc}") from None

    async def _json(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        found = await asyncio.to_thread(self._call, method, path, body, headers or {})
        if not isinstance(found, dict):
            raise Disconnected(f"unexpected answer {found!r}")
        return found

    async def create_plan(self, plan: dict[str, Any]) -> dict[str, Any]:
        """Create a plan (``plan_id``, ``kind``, ``prices`` …; see docs/subscriptions.md)."""
        return await self._json("POST", "/v1/plans", plan)

    async def subscribe(
        self,
        customer: str,
        plan_id: str,
        currency: str,
        payment_method: str,
        *,
        country: str,
        country_evidence: str,
        idempotency_key: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Sign ``customer`` up for ``plan_id`` with the card token the processor's page gave
        (``email``, ``language``, ``card_expires``, ``processor`` optional; ``quantity`` for a
        tiered plan, ``addons`` as ``[{"addon_id", "quantity"}]``). Keep
        ``idempotency_key`` to retry safely: the same key answers the same subscription."""
        body = {
            "customer": customer,
            "plan_id": plan_id,
            "currency": currency,
            "payment_method": payment_method,
            "country": country,
            "country_evidence": country_evidence,
            **extra,
        }
        key = idempotency_key or new_id("signup")
        return await self._json("POST", "/v1/subscriptions", body, {"Idempotency-Key": key})

    async def subscription(self, subscription_id: str) -> dict[str, Any]:
        """A subscription: plan, state, features, the next charge, periods, history."""
        return await self._json("GET", f"/v1/subscriptions/{quote(subscription_id, safe='')}")

    async def change_plan(self, subscription_id: str, plan_id: str) -> dict[str, Any]:
        """Move to ``plan_id`` now; the proration goes on the next invoice."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/change"
        return await self._json("POST", path, {"plan_id": plan_id})

    async def change_items(
        self, subscription_id: str, quantity: int = 1, addons: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Set the quantity a tiered plan counts and the add-ons now; prorated on the next
        invoice."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/items"
        return await self._json("POST", path, {"quantity": quantity, "addons": addons or []})

    async def cancel(self, subscription_id: str, mode: str = "period_end") -> dict[str, Any]:
        """Cancel: ``now``, ``period_end`` (default) or ``notice``."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/cancel"
        return await self._json("POST", path, {"mode": mode})

    async def pause(self, subscription_id: str) -> dict[str, Any]:
        """Pause at the end of the paid period (``pause_at_ms``): no charge, no features until
        :meth:`resume`."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/pause"
        return await self._json("POST", path, {})

    async def resume(self, subscription_id: str) -> dict[str, Any]:
        """Resume: the next period begins and is charged now (a pause not yet taken is
        dropped)."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/resume"
        return await self._json("POST", path, {})

    async def update_card(
        self, subscription_id: str, payment_method: str, card_expires: str = ""
    ) -> dict[str, Any]:
        """A new card on file (``card_expires`` ``YYYY-MM``); a past-due period is retried."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/card"
        body = {"payment_method": payment_method, "card_expires": card_expires}
        return await self._json("POST", path, body)

    async def subscription_pay_link(
        self, subscription_id: str, expiry_h: int = 72
    ) -> dict[str, Any]:
        """A pay link for the period a past-due subscription owes: ``url`` (answered once),
        ``case_id``, ``amount_minor``, ``expires_at_ms``."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/pay-link"
        return await self._json("POST", path, {"expiry_h": expiry_h})

    async def customer_subscriptions(self, customer: str) -> list[dict[str, Any]]:
        """A customer's subscriptions, newest first."""
        found = await self._json("GET", f"/v1/customers/{quote(customer, safe='')}/subscriptions")
        listed = found.get("subscriptions")
        return [s for s in listed if isinstance(s, dict)] if isinstance(listed, list) else []

    async def customer_invoices(self, customer: str, before_ms: int = 0) -> list[dict[str, Any]]:
        """A customer's invoices and credit notes (memberships, Post Pay captures, refunds),
        newest first, with lines and tax; ``before_ms`` pages on."""
        query = f"customer={quote(customer, safe='')}"
        if before_ms:
            query += f"&before_ms={before_ms}"
        found = (await self._json("GET", f"/v1/invoices?{query}")).get("invoices")
        return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []

    async def invoice(self, invoice_id: str) -> dict[str, Any]:
        """One invoice or credit note with its lines (``invoice_not_found`` if none)."""
        return await self._json("GET", f"/v1/invoices/{quote(invoice_id, safe='')}")

    async def invoices(self, subscription_id: str) -> list[dict[str, Any]]:
        """A subscription's invoices, with lines and tax."""
        path = f"/v1/subscriptions/{quote(subscription_id, safe='')}/invoices"
        found = (await self._json("GET", path)).get("invoices")
        return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []
