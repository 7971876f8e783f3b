"""The catalog HTTP API: a model's items and the site's unlocks (docs/purchases.md).

Every route needs the API key (the cam site's backend edits a model's menu for her, and reads
it to show it).

- ``GET /v1/rooms/{room}/catalog`` — the room's items and the site's unlocks;
- ``PUT /v1/rooms/{room}/catalog/{item_id}`` — add or replace an item (``name``, ``kind``
  request|unlock, ``prices`` {currency: minor units}, ``active``, ``limit_per_viewer``,
  ``limit_per_show``, ``duration_s``); 409 ``catalog_full`` past the bound;
- ``DELETE /v1/rooms/{room}/catalog/{item_id}`` — remove an item;
- ``POST /v1/rooms/{room}/catalog/new-show`` — a new show: per-show limits count from zero;
- ``GET /v1/rooms/{room}/requests`` — the model's queue: pending requests by deadline;
- ``POST /v1/rooms/{room}/requests/{customer}/{purchase_id}/fulfil`` (or ``/decline``) — the
  model marks a request done, or declines it (voided before settlement: the viewer pays
  nothing; 409 ``tab_not_open`` once the tab froze: the request leaves her queue and is
  refunded by itself once the tab is captured, :mod:`server.catalog_refunds`);
- ``GET /v1/customers/{customer}/purchases/{purchase_id}`` — a purchase and its state;
- ``GET /v1/customers/{customer}/entitlements`` — the customer's running unlocks
  (``room/item`` → until, ms): what the cam site checks before it shows HD, a channel, a badge.

The server expires requests not done in time, and refunds those declined or expired after
their tab froze, with :func:`expire_requests`, one sweep every :data:`EXPIRY_SWEEP_S` while it
runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metering.errors import StoreError
from metering.keys import is_id
from metering.outcomes import Code
from metering.purchases import PurchaseView
from server.api import BODY_BYTES_MAX, ApiError, json_body, route
from server.catalog import ITEMS_PER_ROOM_MAX, CatalogInvalid, Shop, parse_item, parse_site_unlocks
from server.catalog_refunds import refund_owed
from server.runtime import Runtime
from settlement.errors import SettlementError
from settlement.refunds.service import Refunds

log = logging.getLogger("tipmeter.catalog")

#: Seconds between two sweeps for requests past their deadline.
EXPIRY_SWEEP_S: Final = 1.0


def shop_of(rt: Runtime) -> Shop:
    """The shop over this app's money core, with the site's unlocks from the settings."""
    limits = rt.meter.limits
    return Shop(
        rt.meter,
        site_unlocks=parse_site_unlocks(rt.settings.site_unlocks, limits),
        request_ttl_s=rt.settings.request_ttl_s,
    )


def _room(request: Request) -> str:
    room = request.path_params["room"]
    if not is_id(room):
        raise ApiError(400, "invalid_id", "room ids match [A-Za-z0-9_.-]{1,64}")
    return str(room)


async def handle_read_catalog(request: Request, rt: Runtime) -> Response:
    """The room's items and the site's unlocks."""
    room = _room(request)
    shop = shop_of(rt)
    return JSONResponse(
        {
            "room": room,
            "items": [item.data() for item in await shop.items(room)],
            "site_unlocks": [item.data() for item in shop.site_unlocks],
            "items_max": ITEMS_PER_ROOM_MAX,
        }
    )


async def handle_put_item(
    request: Request, rt: Runtime, *, body_bytes_max: int = BODY_BYTES_MAX
) -> Response:
    """Add or replace one item (a body of at most ``body_bytes_max`` bytes)."""
    room = _room(request)
    raw = await json_body(request, body_bytes_max)
    try:
        item = parse_item(request.path_params["item_id"], raw, rt.meter.limits)
    except CatalogInvalid as exc:
        raise ApiError(400, exc.code, str(exc)) from None
    if not await shop_of(rt).put(room, item):
        raise ApiError(
            409, "catalog_full", f"a catalog holds at most {ITEMS_PER_ROOM_MAX} items; remove one"
        )
    return JSONResponse({"room": room, "item": item.data()})


async def handle_delete_item(request: Request, rt: Runtime) -> Response:
    """Remove one item."""
    room = _room(request)
    item_id = request.path_params["item_id"]
    if not await shop_of(rt).remove(room, item_id):
        raise ApiError(404, "item_not_found", f"room {room} has no item {item_id}")
    return JSONResponse({"room": room, "item_id": item_id, "removed": True})


async def handle_new_show(request: Request, rt: Runtime) -> Response:
    """A new show starts: per-show limits count from zero."""
    room = _room(request)
    await shop_of(rt).new_show(room)
    return JSONResponse({"room": room, "new_show": True})


def _view_data(view: PurchaseView) -> dict[str, Any]:
    return {
        "purchase_id": view.purchase_id,
        "customer": view.customer,
        "tab_id": view.tab_id,
        "room": view.room,
        "item_id": view.item_id,
        "item_name": view.item_name,
        "kind": view.item_kind.value,
        "amount_minor": view.amount_minor,
        "currency": view.currency,
        "share_minor": view.share_minor,
        "state": view.state.value,
        "bought_at_ms": view.bought_at_ms,
        "until_ms": view.until_ms,
        "reason": view.reason,
        "viewer_name": view.viewer_name,
        "message": view.message,
    }


async def handle_queue(request: Request, rt: Runtime) -> Response:
    """The model's queue of pending requests."""
    room = _room(request)
    views = await shop_of(rt).queue(room)
    return JSONResponse({"room": room, "requests": [_view_data(v) for v in views]})


_RESOLVE_STATUS: Final = {
    Code.APPLIED: 200,
    Code.DUPLICATE: 200,
    Code.PURCHASE_NOT_FOUND: 404,
    Code.PURCHASE_NOT_PENDING: 409,
    Code.TAB_NOT_OPEN: 409,
    Code.BUSY: 503,
}


async def _resolve(request: Request, rt: Runtime, *, fulfil: bool) -> Response:
    room = _room(request)
    customer, purchase_id = request.path_params["customer"], request.path_params["purchase_id"]
    if not (is_id(customer) and is_id(purchase_id)):
        raise ApiError(400, "invalid_id", "ids match [A-Za-z0-9_.-]{1,64}")
    shop = shop_of(rt)
    if fulfil:
        result = await shop.fulfil(room, customer, purchase_id)
    else:
        result = await shop.decline(room, customer, purchase_id)
    if not result.code.ok:
        raise ApiError(
            _RESOLVE_STATUS.get(result.code, 500),
            str(result.code),
            f"purchase {purchase_id}: {result.code}",
            state=result.state.value if result.state else None,
        )
    return JSONResponse(
        {
            "purchase_id": purchase_id,
            "code": str(result.code),
            "state": result.state.value if result.state else None,
            "voided_minor": result.voided_minor,
        }
    )


async def handle_fulfil(request: Request, rt: Runtime) -> Response:
    """The model marks a request done."""
    return await _resolve(request, rt, fulfil=True)


async def handle_decline(request: Request, rt: Runtime) -> Response:
    """The model declines a request."""
    return await _resolve(request, rt, fulfil=False)


async def handle_read_purchase(request: Request, rt: Runtime) -> Response:
    """A purchase and its state."""
    customer, purchase_id = request.path_params["customer"], request.path_params["purchase_id"]
    if not (is_id(customer) and is_id(purchase_id)):
        raise ApiError(400, "invalid_id", "ids match [A-Za-z0-9_.-]{1,64}")
    view = await rt.meter.purchases.read(customer, purchase_id)
    if view is None:
        raise ApiError(404, "purchase_not_found", f"no purchase {purchase_id} of {customer}")
    return JSONResponse(_view_data(view))


async def handle_entitlements(request: Request, rt: Runtime) -> Response:
    """The customer's running unlocks."""
    customer = request.path_params["customer"]
    if not is_id(customer):
        raise ApiError(400, "invalid_id", "ids match [A-Za-z0-9_.-]{1,64}")
    now_ms = rt.meter.clock.now_ms()
    running = await shop_of(rt).entitlements(customer, now_ms)
    return JSONResponse(
        {
            "customer": customer,
            "entitlements": [
                {"room": what.split("/")[0], "item_id": what.split("/")[1], "until_ms": until}
                for what, until in running.items()
            ],
        }
    )


async def expire_requests(
    rt: Runtime, stop: asyncio.Event, *, refunds: Callable[[], Refunds]
) -> None:
    """Expire requests past their deadline, and refund those declined or expired after their
    tab froze (:mod:`server.catalog_refunds`), until ``stop`` is set. Every server runs it: a
    void is atomic and idempotent, a refund keyed by its purchase, so two servers sweeping at
    once change nothing twice."""
    shop = shop_of(rt)
    while not stop.is_set():
        now_ms = rt.meter.clock.now_ms()
        try:
            await shop.expire_due(now_ms)
        except StoreError as exc:
            log.warning("request expiry sweep failed", extra={"fields": {"error": repr(exc)}})
        # Apart, so that a ledger or processor down delays refunds and never expiries.
        try:
            await refund_owed(shop, refunds(), now_ms)
        except (StoreError, SettlementError) as exc:
            log.warning("purchase refund sweep failed", extra={"fields": {"error": repr(exc)}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), EXPIRY_SWEEP_S)


def routes() -> list[Route]:
    """The catalog API's routes."""
    return [
        route("GET", "/v1/rooms/{room}/catalog", "read_catalog", handle_read_catalog),
        route("POST", "/v1/rooms/{room}/catalog/new-show", "catalog_new_show", handle_new_show),
        route("PUT", "/v1/rooms/{room}/catalog/{item_id}", "put_catalog_item", handle_put_item),
        route(
            "DELETE",
            "/v1/rooms/{room}/catalog/{item_id}",
            "delete_catalog_item",
            handle_delete_item,
        ),
        route("GET", "/v1/rooms/{room}/requests", "request_queue", handle_queue),
        route(
            "POST",
            "/v1/rooms/{room}/requests/{customer}/{purchase_id}/fulfil",
            "fulfil_request",
            handle_fulfil,
        ),
        route(
            "POST",
            "/v1/rooms/{room}/requests/{customer}/{purchase_id}/decline",
            "decline_request",
            handle_decline,
        ),
        route(
            "GET",
            "/v1/customers/{customer}/purchases/{purchase_id}",
            "read_purchase",
            handle_read_purchase,
        ),
        route("GET", "/v1/customers/{customer}/entitlements", "entitlements", handle_entitlements),
    ]


def _op(summary: str, ok: str, errors: dict[str, str], *names: str) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok}}
    responses["401"] = {"description": "Missing or wrong API key."}
    responses.update({code: {"description": text} for code, text in errors.items()})
    parameters = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]
    return {"summary": summary, "responses": responses, "parameters": parameters}


def openapi_paths() -> dict[str, Any]:
    """The catalog routes as the OpenAPI document describes them (docs/purchases.md)."""
    item = ("room", "item_id")
    request = ("room", "customer", "purchase_id")
    return {
        "/v1/rooms/{room}/catalog": {
            "get": _op("A room's catalog and the site's unlocks.", "The catalog.", {}, "room")
        },
        "/v1/rooms/{room}/catalog/new-show": {
            "post": _op("A new show: per-show limits count from zero.", "Done.", {}, "room")
        },
        "/v1/rooms/{room}/catalog/{item_id}": {
            "put": _op(
                "Add or replace an item (name, kind, prices, active, limits, duration_s).",
                "The item as stored.",
                {"400": "A malformed field (its code).", "409": "`catalog_full`."},
                *item,
            ),
            "delete": _op(
                "Remove an item.", "Removed.", {"404": "No such item (`item_not_found`)."}, *item
            ),
        },
        "/v1/rooms/{room}/requests": {
            "get": _op("The model's queue of pending requests.", "The queue.", {}, "room")
        },
        "/v1/rooms/{room}/requests/{customer}/{purchase_id}/fulfil": {
            "post": _op(
                "The model marks a request done.",
                "Fulfilled.",
                {"404": "`purchase_not_found`.", "409": "`purchase_not_pending`."},
                *request,
            )
        },
        "/v1/rooms/{room}/requests/{customer}/{purchase_id}/decline": {
            "post": _op(
                "The model declines a request: voided, the viewer pays nothing.",
                "Voided.",
                {
                    "404": "`purchase_not_found`.",
                    "409": "`purchase_not_pending`, or `tab_not_open`: refunded after the capture.",
                },
                *request,
            )
        },
        "/v1/customers/{customer}/purchases/{purchase_id}": {
            "get": _op(
                "A purchase and its state.",
                "The purchase.",
                {"404": "`purchase_not_found`."},
                "customer",
                "purchase_id",
            )
        },
        "/v1/customers/{customer}/entitlements": {
            "get": _op(
                "The customer's running unlocks (room, item, until).",
                "The entitlements.",
                {},
                "customer",
            )
        },
    }
