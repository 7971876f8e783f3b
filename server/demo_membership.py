"""The viewer page's "my membership" panel: the demo backend's routes for it, and the sandbox
processor's card page a sign-up goes through.

Theory of operation. A browser never holds the API key, so, as for tabs (:mod:`server.demo_api`),
routes under ``/demo/`` play the cam site's backend for the panel, each calling the very
operation of the subscriptions API (:func:`server.subscriptions_api.sign_up`, ``change``,
``cancel``), limited to demo customers. A sign-up enters its card on the processor's own page,
never on the viewer page: ``POST /demo/customers/{customer}/memberships`` answers the address of
a **checkout** — the sign-up's plan, customer, country and the page to return to, signed with
the deployment's pay-link secret (HMAC-SHA256) and valid for :data:`CHECKOUT_TTL_MS` — at the
sandbox's card page (``/demo/memberships/card/{checkout}``, the pay links' sandbox page with its
test cards). The card posted back signs the customer up under an ``Idempotency-Key`` derived from
the checkout (the form posted twice is one sign-up) and sends her back to the viewer page, whose
panel then follows the subscription from the ``subscription`` WebSocket messages. With a real
processor the cam site's backend would send the customer to that processor's hosted page to
store a card, and sign her up with the token it returns.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any, Final
from urllib.parse import parse_qs, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from metering.money import format_minor
from server import api
from server.api import ApiError
from server.demo_api import DEMO_CURRENCY, DEMO_ROOM_DEFAULT, _only_if, is_demo_id
from server.paylinks import FORM_BYTES_MAX, sandbox_card_page
from server.runtime import Runtime
from server.subscriptions_api import (
    cancel,
    change,
    service_of,
    sign_up,
    subscription_id_for,
)
from settlement.subscriptions.service import NewSubscription

#: How long a checkout (the way to the sandbox's card page) may be used.
CHECKOUT_TTL_MS: Final = 30 * 60_000
#: The countries the panel offers (tax is by country: docs/subscriptions.md).
COUNTRIES: Final = ("US", "DE", "IT", "LT")


def _sign(rt: Runtime, payload: bytes) -> str:
    key = rt.settings.collection_config().link_secret.encode()
    return hmac.new(key, b"membership-checkout\x00" + payload, hashlib.sha256).hexdigest()[:32]


def _checkout(rt: Runtime, fields: dict[str, Any]) -> str:
    payload = orjson.dumps(fields)
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return f"{body}.{_sign(rt, payload)}"


def _opened(rt: Runtime, token: str) -> dict[str, Any]:
    """The checkout a token carries, if it is ours and still valid."""
    body, _, signature = token.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError:
        raise ApiError(404, "checkout_not_found", "no such checkout") from None
    if not hmac.compare_digest(signature, _sign(rt, payload)):
        raise ApiError(404, "checkout_not_found", "no such checkout")
    fields: dict[str, Any] = orjson.loads(payload)
    if fields["expires_at_ms"] <= rt.meter.clock.now_ms():
        raise ApiError(410, "checkout_expired", "start the sign-up again")
    return fields


def _demo_customer(value: object) -> str:
    if not is_demo_id(value):
        raise ApiError(403, "not_a_demo_id", "the demo acts on ids starting 'demo-' only")
    return str(value)


async def _demo_subscription(rt: Runtime, subscription_id: str) -> None:
    """Refuse a subscription that is not a demo customer's."""
    found = await service_of(rt).read(subscription_id)
    if found is None:
        raise ApiError(404, "subscription_not_found", f"no subscription {subscription_id}")
    _demo_customer(found.customer)


async def demo_plans(request: Request, rt: Runtime) -> Response:
    """``GET /demo/plans``: the plans sold in the demo currency, by rank."""
    plans = [p for p in await service_of(rt).plans() if p.price(DEMO_CURRENCY) is not None]
    plans.sort(key=lambda p: (p.kind.value, p.room, p.rank, p.plan_id))
    return JSONResponse({"currency": DEMO_CURRENCY, "plans": [p.to_json() for p in plans]})


async def demo_checkout(request: Request, rt: Runtime) -> Response:
    """``POST /demo/customers/{customer}/memberships`` ``{"plan_id", "country", "room"}``: where
    to enter the card (the sandbox's page) for this sign-up."""
    customer = _demo_customer(request.path_params["customer"])
    body = await api.json_body(request, FORM_BYTES_MAX)
    plan_id, country = api.field(body, "plan_id"), api.field(body, "country", "US")
    room = api.field(body, "room", DEMO_ROOM_DEFAULT)
    plan = await service_of(rt).plan(str(plan_id)) if isinstance(plan_id, str) else None
    if plan is None or plan.price(DEMO_CURRENCY) is None:
        raise ApiError(422, "plan_unknown", "no such plan in the demo currency")
    if country not in COUNTRIES or not is_demo_id(room):
        raise ApiError(400, "invalid_field", f"country is one of {', '.join(COUNTRIES)}")
    token = _checkout(
        rt,
        {
            "customer": customer,
            "plan_id": plan.plan_id,
            "country": country,
            "room": room,
            "nonce": secrets.token_hex(8),
            "expires_at_ms": rt.meter.clock.now_ms() + CHECKOUT_TTL_MS,
        },
    )
    return JSONResponse({"card_url": f"/demo/memberships/card/{token}"}, status_code=201)


async def _card_page(request: Request, rt: Runtime) -> Response:
    """The sandbox processor's card page for a sign-up (GET), and the card posted back (POST):
    the sign-up, then back to the viewer page."""
    token = request.path_params["checkout"]
    checkout = _opened(rt, token)
    plan = await service_of(rt).plan(checkout["plan_id"])
    price = plan.price(DEMO_CURRENCY) if plan is not None else None
    if plan is None or price is None:
        raise ApiError(422, "plan_unknown", "the plan is no longer sold")
    if request.method == "GET":
        today = price.trial_price_minor if plan.trial_days else price.price_minor
        return sandbox_card_page(format_minor(today, DEMO_CURRENCY), request.url.path)
    body = await request.body()
    if len(body) > FORM_BYTES_MAX:
        return Response("form too large", status_code=413)
    card = parse_qs(body.decode(errors="replace")).get("payment_method", [""])[0]
    back = {"customer": checkout["customer"], "room": checkout["room"]}
    new = NewSubscription(
        subscription_id=subscription_id_for(checkout["customer"], checkout["nonce"]),
        customer=checkout["customer"],
        plan_id=plan.plan_id,
        currency=DEMO_CURRENCY,
        payment_method=card[:128] or "tok_visa",
        country=checkout["country"],
        country_evidence="self_declared",
    )
    try:
        await sign_up(rt, new)
        back["membership"] = "signed_up"
    except ApiError as refused:
        back["membership"] = refused.code
    return RedirectResponse(f"/pages/viewer.html?{urlencode(back)}", status_code=303)


async def demo_change(request: Request, rt: Runtime) -> Response:
    """``POST /demo/subscriptions/{subscription_id}/change`` ``{"plan_id"}``."""
    sid = request.path_params["subscription_id"]
    await _demo_subscription(rt, sid)
    body = await api.json_body(request, FORM_BYTES_MAX)
    return JSONResponse(await change(rt, sid, str(api.field(body, "plan_id"))))


async def demo_cancel(request: Request, rt: Runtime) -> Response:
    """``POST /demo/subscriptions/{subscription_id}/cancel`` ``{"mode"}``."""
    sid = request.path_params["subscription_id"]
    await _demo_subscription(rt, sid)
    body = await api.json_body(request, FORM_BYTES_MAX)
    return JSONResponse(await cancel(rt, sid, api.field(body, "mode", "period_end")))


def routes(*, demo_enabled: bool) -> list[Route]:
    """The panel's demo routes (refused with demo_disabled when the demo is off)."""
    demo = [
        ("GET", "/demo/plans", "demo_plans", demo_plans),
        ("POST", "/demo/customers/{customer}/memberships", "demo_membership", demo_checkout),
        ("POST", "/demo/subscriptions/{subscription_id}/change", "demo_change", demo_change),
        ("POST", "/demo/subscriptions/{subscription_id}/cancel", "demo_cancel", demo_cancel),
    ]
    page = api.endpoint(
        "demo_membership_card", _only_if(demo_enabled, _card_page), authenticated=False
    )
    return [
        *(
            Route(
                path,
                api.endpoint(name, _only_if(demo_enabled, handler), authenticated=False),
                methods=[method],
            )
            for method, path, name, handler in demo
        ),
        Route("/demo/memberships/card/{checkout}", page, methods=["GET", "POST"]),
    ]
