"""What a browser needs from this server: the ES-module client, the web pages, and a demo
backend that plays the cam site's backend for those pages.

Theory of operation. The pages (``clients/pages/``: viewer, model console, broadcast overlay)
and the client (``clients/js/tipmeter.js``) are plain files served as they are — no build step.
MessagePack's ES module build comes from ``clients/js/node_modules`` (``npm ci`` run by
``make``); without it only the msgpack option of the client is missing.

A browser must never hold the cam site's API key. On a real site, the site's own backend opens
tabs, mints tickets and settles with its key; for the demo pages, the routes under ``/demo/``
do that job. Each one checks what is the demo's to check (demo ids, its own bounds), then calls
the very operation of the HTTP API (``server.api.open_tab``, ``raise_cap``, ``settle_tab``,
``tab_statement``, ``mint_ticket``, ``create_feed_token``, the catalog's handlers) that a
request of the cam-site backend runs, so the demo opens a tab, raises a cap or settles exactly
as production does, with the same checks and error codes. Because they need no key, they are

- enabled only in the embedded default (``tipmeter serve`` with no Redis configured) or with
  ``TIPMETER_DEMO_API=on``, and answer ``404 demo_disabled`` otherwise (``TIPMETER_DEMO_API=off``
  turns them off everywhere);
- limited to customers and rooms whose id starts with :data:`DEMO_ID_PREFIX`, so turning them
  on by mistake exposes no real customer's tab;
- bounded: bodies of at most :data:`DEMO_BODY_BYTES_MAX` bytes, tickets of
  :data:`DEMO_TICKET_TTL_S` seconds, caps and amounts within the server's own limits (the API
  handlers enforce those).

The overlay's always-on ticket exchange (``POST /overlay/ticket``) is not a demo: it lives in
:mod:`server.overlay`.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import clients
from metering.keys import is_id
from metering.outcomes import TabRef
from server import api, catalog_api
from server.api import ApiError
from server.config import Settings
from server.runtime import Runtime

#: Where the browser's files live (inside the ``clients`` package, so an install carries them).
CLIENTS_DIR: Final = Path(clients.__file__).resolve().parent
PAGES_DIR: Final = CLIENTS_DIR / "pages"
JS_CLIENT_FILE: Final = CLIENTS_DIR / "js" / "tipmeter.js"
MSGPACK_ESM_DIR: Final = CLIENTS_DIR / "js" / "node_modules" / "@msgpack" / "msgpack" / "dist.esm"

#: Demo endpoints act only on customers and rooms whose id starts with this.
DEMO_ID_PREFIX: Final = "demo-"
#: Largest body a demo endpoint reads (its bodies are a handful of short fields).
DEMO_BODY_BYTES_MAX: Final = 2_048
#: Life of a ticket the demo mints: long enough to connect, and a ticket opens one connection.
DEMO_TICKET_TTL_S: Final = 60
#: The demo's currency (the pages format amounts of any ISO-4217 currency).
DEMO_CURRENCY: Final = "USD"
#: The customer and room the pages use when the URL names none (as ``make run`` prints).
DEMO_CUSTOMER_DEFAULT: Final = "demo-viewer"
DEMO_ROOM_DEFAULT: Final = "demo-model"
#: The sandbox gateway's test cards the viewer page offers, with what each one does.
SANDBOX_CARDS: Final = (
    ("tok_visa", "Visa: approves everything"),
    ("tok_mastercard", "Mastercard: approves everything"),
    ("tok_decline_insufficient_funds", "Declined: insufficient funds"),
    ("tok_decline_expired_card", "Declined: expired card"),
    ("tok_decline_do_not_honor", "Declined: do not honor"),
    ("tok_increment_decline", "Approves, but declines a higher cap"),
    ("tok_capture_decline_insufficient_funds", "Approves, but the capture is declined"),
)

# Module scripts must be served with a JavaScript type; some systems map .mjs to nothing.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


def enabled(settings: Settings, *, embedded: bool) -> bool:
    """Tell whether the demo backend runs: ``TIPMETER_DEMO_API``, where ``auto`` means only in
    the embedded default (``embedded``)."""
    if settings.demo_api == "auto":
        return embedded
    return settings.demo_api == "on"


def is_demo_id(value: object) -> bool:
    """Tell whether ``value`` is an id the demo may act on (a valid id with the demo prefix)."""
    return is_id(value) and isinstance(value, str) and value.startswith(DEMO_ID_PREFIX)


async def _read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, reading at most DEMO_BODY_BYTES_MAX bytes."""
    return await api.json_body(request, DEMO_BODY_BYTES_MAX)


def _demo_ref(request: Request) -> TabRef:
    """The tab the path names, refused unless its customer is a demo one."""
    _demo_path(request)
    return TabRef(request.path_params["customer"], request.path_params["tab_id"])


def _demo_path(request: Request) -> None:
    """Refuse a path whose customer or room is not a demo one."""
    for name in ("customer", "room"):
        value = request.path_params.get(name)
        if value is not None and not is_demo_id(value):
            raise ApiError(
                403, "not_a_demo_id", f"the demo acts on ids starting {DEMO_ID_PREFIX!r} only"
            )


async def demo_config(request: Request, rt: Runtime) -> Response:
    """``GET /demo/config``: what the pages need to know (defaults, limits, test cards)."""
    limits = rt.meter.limits
    return JSONResponse(
        {
            "customer": DEMO_CUSTOMER_DEFAULT,
            "room": DEMO_ROOM_DEFAULT,
            "id_prefix": DEMO_ID_PREFIX,
            "currency": DEMO_CURRENCY,
            "cards": [{"token": token, "label": label} for token, label in SANDBOX_CARDS],
            "cap_min_minor": limits.cap_min_minor,
            "cap_max_minor": limits.cap_max_minor,
            "tip_min_minor": limits.tip_min_minor,
            "tip_max_minor": limits.tip_max_minor,
            "rate_min_minor": limits.rate_min_minor,
            "rate_max_minor": limits.rate_max_minor,
        }
    )


async def demo_ticket(request: Request, rt: Runtime) -> Response:
    """``POST /demo/tickets`` ``{"role", "subject", "name"}``: a ticket for one connection of a
    demo viewer (in the demo currency), a demo room's model, or a broadcast tool."""
    body = await _read_json(request)
    subject = body.get("subject")
    if not is_demo_id(subject):
        raise ApiError(403, "not_a_demo_id", f"subject must start with {DEMO_ID_PREFIX!r}")
    role = api.field(body, "role")
    minted = await api.mint_ticket(
        rt,
        role=role,
        subject=str(subject),
        name=api.field(body, "name", ""),
        currency=DEMO_CURRENCY if role == "viewer" else "",
        ttl_s=min(DEMO_TICKET_TTL_S, rt.settings.ticket_ttl_s_max),
    )
    return JSONResponse(minted, status_code=201)


async def demo_open_tab(request: Request, rt: Runtime) -> Response:
    """``POST /demo/tabs``: ``POST /v1/tabs`` for a demo customer (same body and
    ``Idempotency-Key``; the currency defaults to the demo's)."""
    body = await _read_json(request)
    customer = body.get("customer")
    if not is_demo_id(customer):
        raise ApiError(403, "not_a_demo_id", f"customer must start with {DEMO_ID_PREFIX!r}")
    opened = await api.open_tab(
        rt,
        idempotency_key=request.headers.get("idempotency-key", ""),
        customer=str(customer),
        currency=api.field(body, "currency", DEMO_CURRENCY),
        cap_minor=api.field(body, "cap_minor"),
        payment_method=api.field(body, "payment_method"),
    )
    return JSONResponse(api.tab_json(opened.tab), status_code=201 if opened.created else 200)


async def demo_statement(request: Request, rt: Runtime) -> Response:
    """``GET /demo/customers/{customer}/tabs/{tab_id}/statement``: the itemized statement."""
    return JSONResponse(await api.tab_statement(rt, _demo_ref(request)))


async def demo_raise_cap(request: Request, rt: Runtime) -> Response:
    """``POST /demo/customers/{customer}/tabs/{tab_id}/cap`` ``{"cap_minor"}``: raise the cap."""
    ref = _demo_ref(request)
    body = await _read_json(request)
    return JSONResponse(api.tab_json(await api.raise_cap(rt, ref, api.field(body, "cap_minor"))))


async def demo_settle(request: Request, rt: Runtime) -> Response:
    """``POST /demo/customers/{customer}/tabs/{tab_id}/settle``: freeze and queue settlement."""
    tab = await api.settle_tab(rt, _demo_ref(request))
    return JSONResponse(api.tab_json(tab), status_code=202)


async def demo_feed_token(request: Request, rt: Runtime) -> Response:
    """``POST /demo/rooms/{room}/feed-token``: a new event-feed token for a demo room (the
    overlay's link; the previous token stops working)."""
    _demo_path(request)
    return JSONResponse(
        await api.create_feed_token(rt, request.path_params["room"]), status_code=201
    )


async def demo_rates(request: Request, rt: Runtime) -> Response:
    """``GET /demo/rooms/{room}/rates``: a demo room's price of each kind of show, so the viewer
    page shows what a show costs before it starts (the protocol has no message that reads it)."""
    _demo_path(request)
    rates = await rt.meter.sessions.rates(request.path_params["room"])
    return JSONResponse(
        {
            "rates": {
                str(kind): {
                    "rate_per_minute_minor": rate.rate_per_minute_minor,
                    "minimum_s": rate.minimum_s,
                }
                for kind, rate in rates.items()
            }
        }
    )


async def demo_catalog(request: Request, rt: Runtime) -> Response:
    """``GET /demo/rooms/{room}/catalog``: a demo room's menu and the site's unlocks (the
    viewer page's menu, the model console's editor; docs/purchases.md)."""
    _demo_path(request)
    return await catalog_api.handle_read_catalog(request, rt)


async def demo_put_item(request: Request, rt: Runtime) -> Response:
    """``PUT /demo/rooms/{room}/catalog/{item_id}``: the model console adds or edits an item
    (validated and bounded as the HTTP API's)."""
    _demo_path(request)
    return await catalog_api.handle_put_item(request, rt, body_bytes_max=DEMO_BODY_BYTES_MAX)


async def demo_delete_item(request: Request, rt: Runtime) -> Response:
    """``DELETE /demo/rooms/{room}/catalog/{item_id}``: the model console removes an item."""
    _demo_path(request)
    return await catalog_api.handle_delete_item(request, rt)


async def demo_requests(request: Request, rt: Runtime) -> Response:
    """``GET /demo/rooms/{room}/requests``: a demo room's queue of pending requests."""
    _demo_path(request)
    return await catalog_api.handle_queue(request, rt)


def _only_if(is_enabled: bool, handler: api.Handler) -> api.Handler:
    """``handler`` when the demo runs; otherwise a handler that refuses with demo_disabled."""

    async def refuse(request: Request, rt: Runtime) -> Response:
        raise ApiError(
            404,
            "demo_disabled",
            "the demo backend is off: it runs in the embedded default (tipmeter serve with no "
            "Redis configured) or with TIPMETER_DEMO_API=on",
        )

    return handler if is_enabled else refuse


#: What the pages may load and who may frame them. Scripts, styles and requests come from this
#: server; WebSockets may go to any tipmeter server (a page can be pointed at another); no inline
#: script or style; no page may be framed (clickjacking the tip button), not even by this server.
PAGES_CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
#: The headers every page and script is served with.
PAGE_HEADERS: Final = (
    (b"content-security-policy", PAGES_CSP.encode()),
    (b"x-frame-options", b"DENY"),  # frame-ancestors, for browsers that predate it
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


class WithPageHeaders:
    """An ASGI wrapper that adds :data:`PAGE_HEADERS` to every HTTP response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope`` with ``app``, adding the headers to its response's start."""

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *PAGE_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _home(request: Request) -> Response:
    return RedirectResponse("/pages/", status_code=307)


async def _js_client(request: Request) -> Response:
    return FileResponse(JS_CLIENT_FILE, media_type="text/javascript")


def routes(*, demo_enabled: bool) -> list[BaseRoute]:
    """The pages, the client, msgpack's ES module and (when ``demo_enabled``) the demo API."""
    demo = [
        ("GET", "/demo/config", "demo_config", demo_config),
        ("POST", "/demo/tickets", "demo_ticket", demo_ticket),
        ("POST", "/demo/tabs", "demo_open_tab", demo_open_tab),
        (
            "GET",
            "/demo/customers/{customer}/tabs/{tab_id}/statement",
            "demo_statement",
            demo_statement,
        ),
        ("POST", "/demo/customers/{customer}/tabs/{tab_id}/cap", "demo_raise_cap", demo_raise_cap),
        ("POST", "/demo/customers/{customer}/tabs/{tab_id}/settle", "demo_settle", demo_settle),
        ("POST", "/demo/rooms/{room}/feed-token", "demo_feed_token", demo_feed_token),
        ("GET", "/demo/rooms/{room}/rates", "demo_rates", demo_rates),
        # Purchases (issue 17): the menu, its editor and the request queue.
        ("GET", "/demo/rooms/{room}/catalog", "demo_catalog", demo_catalog),
        ("PUT", "/demo/rooms/{room}/catalog/{item_id}", "demo_put_item", demo_put_item),
        ("DELETE", "/demo/rooms/{room}/catalog/{item_id}", "demo_delete_item", demo_delete_item),
        ("GET", "/demo/rooms/{room}/requests", "demo_requests", demo_requests),
    ]
    return [
        Route("/", _home, methods=["GET"]),
        Route("/js/tipmeter.js", _js_client, methods=["GET"]),
        Mount(
            "/js/vendor/msgpack",
            WithPageHeaders(StaticFiles(directory=MSGPACK_ESM_DIR, check_dir=False)),
        ),
        Mount("/pages", WithPageHeaders(StaticFiles(directory=PAGES_DIR, html=True))),
        *(
            Route(
                path,
                api.endpoint(name, _only_if(demo_enabled, handler), authenticated=False),
                methods=[method],
            )
            for method, path, name, handler in demo
        ),
    ]
