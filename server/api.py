"""The HTTP API of the cam-site backend: tabs, tickets, rooms.

Every route but the feed needs ``Authorization: Bearer <API key>``. Bodies are JSON objects of
at most :data:`BODY_BYTES_MAX` bytes, with strict integers for money. Errors are JSON
``{"error": {"code": …, "message": …}}`` with a stable code; docs/http-api.md and
``/openapi.json`` list them.

Opening a tab is idempotent by the ``Idempotency-Key`` header: the tab id is derived from the
customer and that key, and the gateway hold from the tab id, so a retry after any failure finds
the same hold and the same tab, and never places a second hold.

Each operation (:func:`open_tab`, :func:`read_tab`, :func:`raise_cap`, :func:`settle_tab`,
:func:`tab_statement`, :func:`capture_statement`, :func:`mint_ticket`,
:func:`create_feed_token`) is a plain async function of the runtime and plain arguments that
returns its result or raises :class:`ApiError`. It checks its arguments as they come from a
request (a float amount is ``invalid_amount``, not a crash), so the thin HTTP handlers
(``handle_…``) only read the request and shape the answer, and the web pages' demo backend
(``server.demo_api``) calls the very same operations.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from clients.protocol import DuplicateKey, loads_json
from clients.tickets import Role
from metering import keys
from metering.errors import StoreError, StoreUnavailable
from metering.lifecycle import FreezeReason, TabEvent, TabState, sources
from metering.outcomes import Code, Tab, TabRef
from metering.store import as_text, translated
from server.api_contract import (
    CAP,
    CAPTURE_ID,
    COUNTRY,
    COUNTRY_EVIDENCE,
    CURRENCY,
    CUSTOMER,
    EMAIL,
    IDEMPOTENCY_KEY,
    LANGUAGE,
    PAYMENT_METHOD,
    PAYOUT_BP,
    PROCESSOR,
    ROLE,
    ROOM,
    SUBJECT,
    TAB_ID,
    TICKET_NAME,
    TICKET_TTL_S,
    TICKET_TTL_S_DEFAULT,
    Bounds,
)

# ApiError is declared with the contract; the routes' modules import it from here too.
from server.api_contract import ApiError as ApiError
from server.runtime import Runtime, runtime
from settlement.gateway import Gateway, GatewayError, GatewayUnavailable, Hold, Outcome
from settlement.ledger.errors import LedgerError, LedgerUnavailable
from settlement.ledger.holds import HoldCustomer, HoldRecord
from settlement.processors.cascade import RoutedHold, place_hold
from settlement.processors.routing import NoProcessor, RouteRequest
from settlement.queue import request_settlement
from settlement.refunds.service import customer_flagged
from settlement.scripts import SettlementRecord, read_settlement
from settlement.statements import Statement, build_statement, kind_fields, statement_data
from settlement.subscriptions.allowances import reserve_for_tab

log = logging.getLogger("tipmeter.api")

#: Largest request body accepted.
BODY_BYTES_MAX: Final = 16_384

Handler = Callable[[Request, Runtime], Awaitable[Response]]
T = TypeVar("T")


async def internal_error(request: Request, exc: Exception) -> Response:
    """The answer to any error nothing else handled, on every route (HTTP API, feed, pages):
    the documented JSON shape, never Starlette's plain-text page. The exception itself is
    logged with its traceback by the server, once."""
    return ApiError(500, "internal_error", "internal error; retry").response()


_STATUS_OF: Final = {
    Code.INVALID_ID: 400,
    Code.INVALID_AMOUNT: 400,
    Code.INVALID_CURRENCY: 400,
    Code.INVALID_FIELD: 400,
    Code.CAP_OUT_OF_RANGE: 400,
    Code.TAB_NOT_FOUND: 404,
    Code.TAB_NOT_OPEN: 409,
    Code.TAB_ALREADY_OPEN: 409,
    Code.CAP_NOT_RAISED: 409,
    Code.ID_REUSED: 409,
}


def _code_error(code: Code, message: str, **extra: Any) -> ApiError:
    return ApiError(_STATUS_OF.get(code, 500), str(code), message, **extra)


def _authorized(request: Request, rt: Runtime) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        return False
    return any(hmac.compare_digest(key.encode(), k.encode()) for k in rt.settings.api_keys)


def endpoint(
    name: str, handler: Handler, *, authenticated: bool = True
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``handler``: authentication, errors as JSON, metrics by route ``name``."""

    async def serve(request: Request) -> Response:
        rt = runtime(request)
        try:
            if authenticated and not _authorized(request, rt):
                raise ApiError(401, "unauthorized", "send Authorization: Bearer <API key>")
            response = await handler(request, rt)
        except ApiError as error:
            response = error.response()
        except StoreUnavailable:
            response = ApiError(503, "unavailable", "Redis is unavailable; retry").response()
        except LedgerUnavailable:
            response = ApiError(
                503, "ledger_unavailable", "the ledger database is unavailable; retry"
            ).response()
        except StoreError:
            log.exception("request failed", extra={"fields": {"route": name}})
            response = ApiError(500, "internal_error", "internal error; retry").response()
        rt.metrics.http_requests.labels(name, str(response.status_code)).inc()
        return response

    return serve


async def read_body(request: Request, bytes_max: int, what: str = "bodies") -> bytes:
    """The request's body, reading at most ``bytes_max`` bytes (413 ``body_too_large`` past
    it, the message naming ``what`` the route reads)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > bytes_max:
            raise ApiError(413, "body_too_large", f"{what} are at most {bytes_max} bytes")
    return body


async def json_body(request: Request, bytes_max: int = BODY_BYTES_MAX) -> dict[str, Any]:
    """The request's body as a JSON object, reading at most ``bytes_max`` bytes (413 past it;
    400 ``malformed_body`` for anything but a JSON object)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > bytes_max:
        raise ApiError(413, "body_too_large", f"bodies are at most {bytes_max} bytes")
    body = await read_body(request, bytes_max)
    try:
        value = loads_json(body or b"{}")
    except DuplicateKey as exc:
        raise ApiError(400, "duplicate_key", f"the body repeats a key: {exc}") from None
    except ValueError:
        raise ApiError(400, "malformed_body", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "malformed_body", "the body must be a JSON object")
    return value


def field(body: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field of a JSON body as it came, unchecked (``default`` when absent): the operations
    below check their arguments themselves, with the error codes of the HTTP API."""
    return body.get(name, default)


def bounds_of(rt: Runtime) -> Bounds:
    """The bounds of this server's settings that its inputs are checked against."""
    return Bounds.of(
        rt.meter.limits,
        ticket_ttl_s_max=rt.settings.ticket_ttl_s_max,
        feed_timeout_s_max=rt.settings.feed_timeout_s_max,
    )


def _check_ref(ref: TabRef) -> TabRef:
    CUSTOMER.check(ref.customer)
    TAB_ID.check(ref.tab_id)
    return ref


def _path_ref(request: Request) -> TabRef:
    return _check_ref(TabRef(request.path_params["customer"], request.path_params["tab_id"]))


def tab_json(tab: Tab) -> dict[str, Any]:
    """A tab as the HTTP API shows it."""
    return {
        "tab_id": tab.ref.tab_id,
        "customer": tab.ref.customer,
        "currency": tab.currency,
        "state": str(tab.state),
        "cap_minor": tab.cap_minor,
        "accrued_minor": tab.accrued_minor,
        "remaining_minor": tab.remaining_minor,
        "version": tab.version,
        "capture_before_ms": tab.capture_before_ms,
        "opened_at_ms": tab.opened_at_ms,
        "active_at_ms": tab.active_at_ms,
        "freeze_reason": tab.freeze_reason or None,
        "frozen_at_ms": tab.frozen_at_ms or None,
        "processor": tab.processor,
        "lines": [
            {
                "kind": line.kind,
                "line_id": line.line_id,
                "seq": line.seq,
                "at_ms": line.at_ms,
                "room": line.room,
                "amount_minor": line.amount_minor,
                "payout_bp": line.payout_bp,
                "share_minor": line.share_minor,
                # Sessions: seconds and rate; purchases (issue 17): the item and its state.
                **kind_fields(line),
            }
            for line in tab.lines
        ],
    }


def statement_json(tab: Tab, statement: Statement) -> dict[str, Any]:
    """A tab's itemized statement: every line, the lines grouped (per model; sessions per rate),
    the totals per model, the platform's part, the total — which is what is captured — and, once
    settled, how the settlement ended."""
    by_room: dict[str, dict[str, int]] = {}
    for line in tab.lines:
        room = by_room.setdefault(
            line.room,
            {
                "tips_minor": 0,
                "sessions_minor": 0,
                "session_seconds": 0,
                "total_minor": 0,
                "share_minor": 0,
            },
        )
        if line.kind == "session":
            room["sessions_minor"] += line.amount_minor
            room["session_seconds"] += line.seconds
        else:
            room["tips_minor"] += line.amount_minor
        room["total_minor"] += line.amount_minor
        room["share_minor"] += line.share_minor
    settled = statement_data(statement)
    extra: dict[str, Any] = {}
    if tab.second_holds:
        extra["authorizations"] = [
            {
                "auth_ref": tab.auth_ref,
                "amount_minor": tab.cap_minor - sum(h.amount_minor for h in tab.second_holds),
            },
            *({"auth_ref": h.auth_ref, "amount_minor": h.amount_minor} for h in tab.second_holds),
        ]
        extra["note"] = (
            f"The cap was raised by {len(tab.second_holds)} further authorization(s) at a "
            "processor that cannot raise one in place: the tab settles with one capture per "
            f"authorization, up to {len(tab.second_holds) + 1} charges on the card statement."
        )
    return {
        **settled,
        **extra,
        "cap_minor": tab.cap_minor,
        "lines": tab_json(tab)["lines"],
        "groups": settled["lines"],
        "by_model": [{"room": room, **sums} for room, sums in sorted(by_room.items())],
    }


def tab_id_for(customer: str, idempotency_key: str) -> str:
    """The tab id an open request with this Idempotency-Key creates (stable across retries)."""
    digest = hashlib.sha256(f"{customer}\x00{idempotency_key}".encode()).digest()[:16]
    return "tab_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def feed_token_hash(token: str) -> str:
    """What is stored of a feed token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


# -- operations: plain arguments in, a result out, ApiError for every refusal ------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """What :func:`open_tab` did: the tab, and whether this call opened it (``False``: a retry
    with the same Idempotency-Key found the tab an earlier call opened)."""

    tab: Tab
    created: bool


async def open_tab(
    rt: Runtime,
    *,
    idempotency_key: str,
    customer: str,
    currency: str,
    cap_minor: int,
    payment_method: str,
    country: str = "",
    processor: str = "",
    country_evidence: str = "",
    email: str = "",
    language: str = "",
) -> Opened:
    """Authorize a hold of ``cap_minor`` on ``payment_method``, then open the tab.

    The processor is routed (``country``, the currency, an explicit ``processor``; see
    docs/processors.md) and recorded on the tab: every later call for the tab goes there. A
    processor that authorizes less than asked (a partial authorization) sets the cap to what it
    authorized. Idempotent by ``idempotency_key``: the tab id is derived from the customer and
    the key and the hold's key from the tab id, so a retry finds the same hold and the same tab
    (after a 3-D Secure challenge, the retry finds the hold the customer completed). Each
    argument is checked as it comes from a request (``idempotency_key_required``,
    ``invalid_id``, ``invalid_currency``, ``invalid_amount``, ``invalid_field``,
    ``cap_out_of_range``, in that order).
    """
    IDEMPOTENCY_KEY.check(idempotency_key)
    customer = CUSTOMER.check(customer)
    currency = CURRENCY.check(currency)
    cap = CAP.check_type(cap_minor)
    PAYMENT_METHOD.check(payment_method)
    limits = rt.meter.limits
    CAP.check_range(cap, bounds_of(rt))
    COUNTRY.check(country)
    COUNTRY_EVIDENCE.check(country_evidence)
    EMAIL.check(email)
    LANGUAGE.check(language)
    PROCESSOR.check(processor)
    tab_id = tab_id_for(customer, idempotency_key)
    ref = TabRef(customer, tab_id)
    if await customer_flagged(rt.ledger.database, customer):
        raise ApiError(
            403, "customer_flagged", "a dispute flagged this customer; support clears it"
        )
    existing = await rt.meter.tabs.read(ref)
    if existing is not None:
        if existing.currency != currency:
            raise ApiError(
                409, "idempotency_key_reused", "this key opened a tab in another currency"
            )
        # A retry puts in what an earlier call may not have (it is idempotent).
        await reserve_allowances(rt, existing)
        return Opened(existing, created=False)
    other = await rt.meter.tabs.find_open(customer, currency)
    if other is not None:
        raise ApiError(409, "tab_already_open", "the customer has an open tab", tab_id=other)
    request = RouteRequest(
        route_key=tab_id, currency=currency, country=country.upper(), preferred=processor
    )
    routed = await _answered(
        place_hold(
            rt.processors,
            request,
            idempotency_key=f"auth:{tab_id}",
            payment_method=payment_method,
            amount_minor=cap,
            currency=currency,
        ),
        retry="retry with the same Idempotency-Key",
    )
    hold = _approved(routed.hold, declined="the card was declined", routed=routed)
    gateway = rt.processors.for_processor(routed.processor)
    if hold.amount_minor < limits.cap_min_minor:
        # A partial authorization too small for a tab: release it rather than open a tab the
        # viewer could not use.
        await _void_quietly(gateway, tab_id, hold)
        raise ApiError(
            402,
            "card_declined",
            "the card authorized less than the smallest cap",
            decline_reason="partial_authorization",
            authorized_minor=hold.amount_minor,
        )
    # The hold is recorded before the tab exists: the ledger knows every hold a tab could
    # be charged on (and the card on file), and a retry with the same key records nothing new.
    await _record_hold(
        rt,
        ref,
        routed.processor,
        f"auth:{tab_id}",
        hold,
        payment_method,
        currency=currency,
        # Recorded for the invoice of the tab's capture (docs/invoices.md).
        customer=HoldCustomer(country.upper(), country_evidence, email, language or "en"),
    )
    opened = await rt.meter.tabs.open(
        customer=customer,
        currency=currency,
        # The cap is what the processor authorized: a partial authorization lowers it.
        cap_minor=min(cap, hold.amount_minor),
        auth_ref=hold.auth_ref,
        capture_before_ms=hold.expires_at_ms,
        tab_id=tab_id,
        processor=routed.processor,
        processor_tried=routed.tried_text,
        payment_method=payment_method,
    )
    if opened.code is Code.TAB_ALREADY_OPEN:
        # Another request opened a tab between our check and our open: release this hold.
        await _void_quietly(gateway, tab_id, hold)
        raise ApiError(
            409, "tab_already_open", "the customer has an open tab", tab_id=opened.tab_id
        )
    if not opened.code.ok:
        raise _code_error(opened.code, "the tab could not be opened")
    tab = await read_tab(rt, ref)
    await reserve_allowances(rt, tab)
    return Opened(tab, created=opened.code is Code.APPLIED)


async def reserve_allowances(rt: Runtime, tab: Tab) -> None:
    """Put the allowances of the customer's memberships into ``tab`` while it is open
    (docs/subscriptions.md, "Allowances"; safe to repeat). A failure is logged, not answered:
    the tab works without them, and the next open call for it (a retry) or a sign-up tries
    again."""
    if tab.state is not TabState.OPEN:
        return
    try:
        await reserve_for_tab(
            rt.ledger.database,
            rt.store,
            tab.ref,
            expires_ms=tab.capture_before_ms,
            now_ms=rt.meter.clock.now_ms(),
        )
    except (LedgerError, StoreError, psycopg.Error) as exc:
        log.warning(
            "could not reserve a member's allowances for a tab",
            extra={"fields": {"tab": tab.ref.tab_id, "why": repr(exc)}},
        )


async def _void_quietly(gateway: Gateway, tab_id: str, hold: Hold) -> None:
    try:
        await gateway.void(idempotency_key=f"void:{tab_id}", auth_ref=hold.auth_ref)
    except GatewayError:
        log.warning("could not void a surplus hold", extra={"fields": {"tab": tab_id}})


async def _answered(call: Awaitable[T], *, retry: str) -> T:
    """Await a gateway call: 503 ``gateway_unavailable`` (with ``retry``) or 400
    ``gateway_refused`` if it fails, 422 ``no_processor`` if no processor may serve it."""
    try:
        return await call
    except GatewayUnavailable:
        raise ApiError(503, "gateway_unavailable", retry) from None
    except GatewayError as exc:
        raise ApiError(400, "gateway_refused", str(exc)) from None
    except NoProcessor as exc:
        raise ApiError(422, "no_processor", str(exc)) from None


def _approved(hold: Hold, *, declined: str, routed: RoutedHold | None = None) -> Hold:
    """``hold`` if approved; else 402 ``card_declined``, or 402 ``customer_action_required``
    with what the page needs for a 3-D Secure challenge."""
    where: dict[str, Any] = {}
    if routed is not None:
        where = {"processor": routed.processor, "tried": routed.tried_text}
    if hold.outcome is Outcome.ACTION_REQUIRED and hold.action is not None:
        raise ApiError(
            402,
            "customer_action_required",
            "the customer must complete a 3-D Secure challenge; then repeat this request with "
            "the same Idempotency-Key",
            action={
                "kind": hold.action.kind,
                "client_secret": hold.action.client_secret,
                "redirect_url": hold.action.redirect_url,
            },
            processor_ref=hold.processor_ref,
            **where,
        )
    if not hold.approved:
        raise ApiError(
            402,
            "card_declined",
            declined,
            decline_reason=str(hold.decline_reason),
            processor_ref=hold.processor_ref,
            **where,
        )
    return hold


async def read_tab(rt: Runtime, ref: TabRef) -> Tab:
    """The tab ``ref`` with its itemized lines (``tab_not_found`` if there is none): from Redis
    while it lives there, from the ledger once its keys have expired."""
    tab = await rt.meter.tabs.read(_check_ref(ref))
    if tab is None:
        tab, _ = await _settled(rt, ref)
        return tab
    return await _ended_as_recorded(rt, tab)


async def _settled(rt: Runtime, ref: TabRef) -> tuple[Tab, SettlementRecord]:
    """A tab and its settlement record: Redis first (one snapshot), then the ledger."""
    found = await read_settlement(rt.store, ref)
    if found is None:
        found = await rt.ledger.read_tab(ref)
    if found is None:
        raise ApiError(404, "tab_not_found", f"no tab {ref.tab_id} for customer {ref.customer}")
    return await _ended_as_recorded(rt, found[0]), found[1]


#: Tab states that collection ends in the ledger only (``collected``, ``written_off``).
_COLLECTABLE: Final = sources(TabEvent.COLLECT) | sources(TabEvent.WRITE_OFF)


async def _ended_as_recorded(rt: Runtime, tab: Tab) -> Tab:
    """A failed or expired tab as the ledger of record has it now.

    Redis keeps the state the settlement left (``failed``, ``expired``) until its keys expire;
    a collection case ends the tab ``collected`` or ``written_off`` in the ledger alone
    (docs/collection.md), so for those states the ledger answers. With the ledger unreachable
    the meter's state is answered (as before collection existed) rather than an error.
    """
    if tab.state not in _COLLECTABLE:
        return tab
    try:
        recorded = await rt.ledger.read_tab(tab.ref)
    except LedgerUnavailable as exc:
        log.warning("tab state read from Redis only: %s", exc)
        return tab
    if recorded is None or recorded[0].state is tab.state:
        return tab
    return dataclasses.replace(tab, state=recorded[0].state)


async def raise_cap(rt: Runtime, ref: TabRef, cap_minor: int) -> Tab:
    """Raise the tab's hold through the gateway to ``cap_minor``, then its cap; return the tab.

    Raising to the current cap is a harmless repeat; a lower cap is ``cap_not_raised``, a
    declined increment ``card_declined`` (the cap stays). At a processor without incremental
    authorization the raise is a second hold under the same tab (one capture per hold).
    """
    _check_ref(ref)
    cap = CAP.check_type(cap_minor)
    tab = await read_tab(rt, ref)
    CAP.check_range(cap, bounds_of(rt))
    if tab.state is not TabState.OPEN:
        raise ApiError(409, "tab_not_open", "only an open tab's cap can be raised")
    if cap < tab.cap_minor:
        raise ApiError(409, "cap_not_raised", "a cap only grows", cap_minor=tab.cap_minor)
    if cap > tab.cap_minor:
        gateway = rt.processors.for_processor(tab.processor)
        if not gateway.capabilities.incremental_authorization:
            await _raise_by_second_hold(rt, gateway, tab, cap)
            return await read_tab(rt, ref)
        hold = _approved(
            await _answered(
                gateway.increment(
                    idempotency_key=f"increment:{ref.tab_id}:{cap}",
                    auth_ref=tab.auth_ref,
                    amount_minor=cap,
                ),
                retry="retry the same request",
            ),
            declined="the card declined the higher hold",
        )
        await _record_hold(
            rt,
            ref,
            tab.processor,
            f"increment:{ref.tab_id}:{cap}",
            hold,
            "",
            currency=tab.currency,
            kind="increment",
        )
        raised = await rt.meter.tabs.raise_cap(
            ref, cap_minor=cap, auth_ref=hold.auth_ref, capture_before_ms=hold.expires_at_ms
        )
        if not raised.code.ok:
            raise _code_error(raised.code, "the cap could not be raised")
    return await read_tab(rt, ref)


async def _record_hold(
    rt: Runtime,
    ref: TabRef,
    processor: str,
    key: str,
    hold: Hold,
    payment_method: str,
    *,
    currency: str,
    kind: str = "authorize",
    customer: HoldCustomer | None = None,
) -> None:
    """Record an approved hold (or increment) in the ledger, once per idempotency key."""
    await rt.ledger.record_hold(
        HoldRecord(
            idempotency_key=key,
            ref=ref,
            processor=processor or rt.processors.default_name,
            auth_ref=hold.auth_ref,
            payment_method=payment_method,
            kind=kind,
            currency=currency,
            amount_minor=hold.amount_minor,
            expires_at_ms=hold.expires_at_ms,
            recorded_at_ms=rt.meter.clock.now_ms(),
            processor_ref=hold.processor_ref,
            customer=customer if customer is not None else HoldCustomer(),
        )
    )


async def _raise_by_second_hold(rt: Runtime, gateway: Gateway, tab: Tab, cap: int) -> None:
    """Raise the cap at a processor without incremental authorization: a second hold of the
    difference on the same payment method, recorded beside the first (the tab then settles
    with one capture per hold, and its statement says so)."""
    ref = tab.ref
    extra = cap - tab.cap_minor
    if not tab.payment_method:
        raise ApiError(
            409,
            "increment_unsupported",
            "the processor holding this tab cannot raise a hold, and the tab keeps no payment "
            "method for a second one; settle it and open another",
            processor=tab.processor,
        )
    hold = _approved(
        await _answered(
            gateway.authorize(
                idempotency_key=f"auth:{ref.tab_id}:raise:{cap}",
                payment_method=tab.payment_method,
                amount_minor=extra,
                currency=tab.currency,
            ),
            retry="retry the same request",
        ),
        declined="the card declined the second hold",
    )
    if hold.amount_minor != extra:
        await _void_quietly(gateway, f"{ref.tab_id}:raise:{cap}", hold)
        raise ApiError(
            402,
            "card_declined",
            "the card authorized less than the raise",
            decline_reason="partial_authorization",
            authorized_minor=hold.amount_minor,
        )
    await _record_hold(
        rt,
        ref,
        tab.processor,
        f"auth:{ref.tab_id}:raise:{cap}",
        hold,
        tab.payment_method,
        currency=tab.currency,
    )
    raised = await rt.meter.tabs.raise_cap(
        ref,
        cap_minor=cap,
        auth_ref=hold.auth_ref,
        capture_before_ms=hold.expires_at_ms,
        second_hold_minor=extra,
    )
    if not raised.code.ok:
        # The tab stopped being open meanwhile: the second hold backs nothing.
        await _void_quietly(gateway, f"{ref.tab_id}:raise:{cap}", hold)
        raise _code_error(raised.code, "the cap could not be raised")


async def settle_tab(rt: Runtime, ref: TabRef) -> Tab:
    """Freeze the tab now (reason ``merchant``) and queue its settlement; return the tab, now
    ``settling``. Asking again is harmless."""
    result = await request_settlement(rt.meter, _check_ref(ref), FreezeReason.MERCHANT)
    if not result.code.ok:
        raise _code_error(result.code, "the tab cannot be settled now")
    return await read_tab(rt, ref)


async def tab_statement(rt: Runtime, ref: TabRef) -> dict[str, Any]:
    """The tab's itemized statement (see :func:`statement_json`; total = what is captured)."""
    tab, record = await _settled(rt, _check_ref(ref))
    return statement_json(tab, build_statement(tab, record))


async def capture_statement(rt: Runtime, capture_id: str) -> dict[str, Any]:
    """The statement of the tab a capture settled (support's "find my payment", from the id on
    the card statement or the processor's dashboard); ``capture_not_found`` otherwise."""
    ref = None
    if CAPTURE_ID.accepts(capture_id, bounds_of(rt)):
        ref = await rt.ledger.find_capture(capture_id)
    if ref is None:
        raise ApiError(404, "capture_not_found", f"no capture {capture_id}")
    tab, record = await _settled(rt, ref)
    return statement_json(tab, build_statement(tab, record))


async def room_earnings(rt: Runtime, room: str) -> dict[str, Any]:
    """A model room's earnings: what settled tabs paid it, per currency, from the ledger (the
    model's share is what the platform owes her; ``pending_minor`` waits for collection),
    and the live figure of what is accrued on tabs not settled yet, from Redis."""
    room = ROOM.check(room)
    settled = await rt.ledger.room_earnings(room)
    live = await rt.meter.rooms.earnings(room)
    return {
        "room": room,
        "settled": [
            {
                "currency": e.currency,
                "gross_minor": e.gross_minor,
                "share_minor": e.share_minor,
                "pending_minor": e.pending_minor,
                "settlements": e.settlements,
            }
            for e in settled
        ],
        "accrued": {
            name.removeprefix("accrued:"): value
            for name, value in sorted(live.items())
            if name.startswith("accrued:")
        },
    }


async def mint_ticket(
    rt: Runtime,
    *,
    role: str,
    subject: str,
    name: str = "",
    currency: str = "",
    ttl_s: int = TICKET_TTL_S_DEFAULT,
) -> dict[str, Any]:
    """A short-lived, single-use ticket for one WebSocket connection:
    ``{"ticket", "expires_at_ms", "ws_url"}``. ``currency`` is a viewer's only (and required
    for one); ``ttl_s`` is at most ``TIPMETER_TICKET_TTL_S_MAX``."""
    checked_role = Role(ROLE.check(role))
    subject = SUBJECT.check(subject)
    TICKET_NAME.check(name)
    currency = CURRENCY.check(currency) if checked_role is Role.VIEWER else ""
    TICKET_TTL_S.check(ttl_s, bounds_of(rt))
    ticket, expires = rt.tickets.mint(
        role=checked_role, subject=subject, ttl_ms=ttl_s * 1000, name=name, currency=currency
    )
    ws_url = rt.settings.base_url.replace("http", "ws", 1) + "/ws"
    return {"ticket": ticket, "expires_at_ms": expires, "ws_url": ws_url}


async def create_feed_token(rt: Runtime, room: str) -> dict[str, Any]:
    """A new token for the room's event feed (the previous one stops working):
    ``{"room", "token", "feed_url"}``."""
    room = ROOM.check(room)
    token = secrets.token_urlsafe(24)
    with translated():
        await rt.store.client.hset(
            keys.room_profile(room), "feed_token_sha256", feed_token_hash(token)
        )
    feed_url = f"{rt.settings.base_url}/events/{room}/{token}/"
    return {"room": room, "token": token, "feed_url": feed_url}


# -- HTTP handlers: read the request, call the operation, shape the answer ----------------------


async def handle_open_tab(request: Request, rt: Runtime) -> Response:
    """``POST /v1/tabs``: authorize a hold for the cap, then open the tab (201; 200 for a
    retry with the same Idempotency-Key)."""
    idempotency_key = IDEMPOTENCY_KEY.check(request.headers.get("idempotency-key", ""))
    body = await json_body(request)
    opened = await open_tab(
        rt,
        idempotency_key=idempotency_key,
        customer=field(body, "customer"),
        currency=field(body, "currency"),
        cap_minor=field(body, "cap_minor"),
        payment_method=field(body, "payment_method"),
        country=field(body, "country", ""),
        processor=field(body, "processor", ""),
        country_evidence=field(body, "country_evidence", ""),
        email=field(body, "email", ""),
        language=field(body, "language", ""),
    )
    return JSONResponse(tab_json(opened.tab), status_code=201 if opened.created else 200)


async def handle_read_tab(request: Request, rt: Runtime) -> Response:
    """``GET /v1/customers/{customer}/tabs/{tab_id}``: the tab with its itemized lines."""
    return JSONResponse(tab_json(await read_tab(rt, _path_ref(request))))


async def handle_read_statement(request: Request, rt: Runtime) -> Response:
    """``GET …/statement``: the tab's itemized statement (total = what is captured)."""
    return JSONResponse(await tab_statement(rt, _path_ref(request)))


async def handle_read_capture(request: Request, rt: Runtime) -> Response:
    """``GET /v1/captures/{capture_id}``: the statement of the tab a capture settled."""
    return JSONResponse(await capture_statement(rt, request.path_params["capture_id"]))


async def handle_room_earnings(request: Request, rt: Runtime) -> Response:
    """``GET /v1/rooms/{room}/earnings``."""
    return JSONResponse(await room_earnings(rt, request.path_params["room"]))


async def handle_raise_cap(request: Request, rt: Runtime) -> Response:
    """``POST …/cap``: raise the hold through the gateway, then the tab's cap."""
    ref = _path_ref(request)
    body = await json_body(request)
    return JSONResponse(tab_json(await raise_cap(rt, ref, field(body, "cap_minor"))))


async def handle_settle_tab(request: Request, rt: Runtime) -> Response:
    """``POST …/settle``: freeze the tab now and queue its settlement (202)."""
    tab = await settle_tab(rt, _path_ref(request))
    return JSONResponse(tab_json(tab), status_code=202)


async def handle_mint_ticket(request: Request, rt: Runtime) -> Response:
    """``POST /v1/tickets``: a short-lived, single-use ticket for one WebSocket connection."""
    body = await json_body(request)
    minted = await mint_ticket(
        rt,
        role=field(body, "role"),
        subject=field(body, "subject"),
        name=field(body, "name", ""),
        currency=field(body, "currency"),
        ttl_s=field(body, "ttl_s", TICKET_TTL_S_DEFAULT),
    )
    return JSONResponse(minted, status_code=201)


async def handle_set_payout(request: Request, rt: Runtime) -> Response:
    """``PUT /v1/rooms/{room}/payout``: the model's share of later charges, in basis points."""
    room = ROOM.check(request.path_params["room"])
    body = await json_body(request)
    payout_bp = PAYOUT_BP.check(field(body, "payout_bp"))
    await rt.meter.rooms.set_payout_bp(room, payout_bp)
    return JSONResponse({"room": room, "payout_bp": payout_bp})


async def handle_create_feed_token(request: Request, rt: Runtime) -> Response:
    """``POST /v1/rooms/{room}/feed-token``: a new token for the room's event feed."""
    return JSONResponse(await create_feed_token(rt, request.path_params["room"]), status_code=201)


async def feed_token_valid(rt: Runtime, room: str, token: str) -> bool:
    """Tell whether ``token`` is ``room``'s current feed token."""
    with translated():
        stored = await rt.store.client.hget(keys.room_profile(room), "feed_token_sha256")
    if stored is None:
        return False
    return hmac.compare_digest(as_text(stored), feed_token_hash(token))


def route(
    method: str, path: str, name: str, handler: Handler, *, authenticated: bool = True
) -> Route:
    """One route of the API: ``handler`` behind :func:`endpoint` (the key, errors as JSON,
    metrics by ``name``)."""
    return Route(path, endpoint(name, handler, authenticated=authenticated), methods=[method])


def routes() -> list[Route]:
    """The HTTP API's routes."""
    return [
        route("POST", "/v1/tabs", "open_tab", handle_open_tab),
        route("GET", "/v1/customers/{customer}/tabs/{tab_id}", "read_tab", handle_read_tab),
        route(
            "GET",
            "/v1/customers/{customer}/tabs/{tab_id}/statement",
            "read_statement",
            handle_read_statement,
        ),
        route("POST", "/v1/customers/{customer}/tabs/{tab_id}/cap", "raise_cap", handle_raise_cap),
        route(
            "POST", "/v1/customers/{customer}/tabs/{tab_id}/settle", "settle_tab", handle_settle_tab
        ),
        route("GET", "/v1/captures/{capture_id}", "read_capture", handle_read_capture),
        route("POST", "/v1/tickets", "mint_ticket", handle_mint_ticket),
        route("PUT", "/v1/rooms/{room}/payout", "set_payout", handle_set_payout),
        route("GET", "/v1/rooms/{room}/earnings", "room_earnings", handle_room_earnings),
        route("POST", "/v1/rooms/{room}/feed-token", "create_feed_token", handle_create_feed_token),
    ]
