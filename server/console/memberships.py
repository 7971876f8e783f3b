"""Memberships in the console: a customer's subscriptions, and support's cancel, pause and
resume — each through the HTTP API the cam site's backend calls (:func:`support.call_api`, in
process), each audited with the API's answer, like the other support actions.

The routes (docs/console.md has the table): ``GET /console/api/customers/{customer}/subscriptions``
(read-only), ``POST /console/api/subscriptions/{subscription_id}/cancel`` ``{"mode": "now" |
"period_end"}``, ``POST /console/api/subscriptions/{subscription_id}/pause`` and ``…/resume``
(support).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from metering.keys import is_id
from server.api import ApiError, json_body
from server.console.routes import CONSOLE_BODY_BYTES_MAX, Operator
from server.console.support import _relay, call_api
from server.runtime import Runtime

#: Longest subscription id the console passes on (the API's own bound).
SUBSCRIPTION_ID_CHARS_MAX: Final = 200
#: When a cancellation from the console takes effect (a notice period is the member's choice).
CANCEL_MODES: Final = ("now", "period_end")


def _subscription_id(request: Request) -> str:
    found = str(request.path_params["subscription_id"])
    if not (0 < len(found) <= SUBSCRIPTION_ID_CHARS_MAX and found.isprintable()):
        raise ApiError(
            400, "invalid_id", f"a subscription id is printable, 1..{SUBSCRIPTION_ID_CHARS_MAX}"
        )
    return found


def _path(subscription_id: str, action: str) -> str:
    return f"/v1/subscriptions/{quote(subscription_id, safe='')}/{action}"


async def customer_subscriptions(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``GET /console/api/customers/{customer}/subscriptions``: a customer's memberships."""
    customer = request.path_params["customer"]
    if not is_id(customer):
        raise ApiError(400, "invalid_id", "customer is an id")
    status, answer = await call_api(request, rt, "GET", f"/v1/customers/{customer}/subscriptions")
    return await _relay(request, rt, operator, "membership_search", customer, status, answer)


async def cancel(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/subscriptions/{subscription_id}/cancel`` ``{"mode"}``: at once or at
    the end of the paid period."""
    body = await json_body(request, CONSOLE_BODY_BYTES_MAX)
    mode = body.get("mode", "period_end")
    if mode not in CANCEL_MODES:
        raise ApiError(400, "invalid_field", f"mode is one of {', '.join(CANCEL_MODES)}")
    sid = _subscription_id(request)
    status, answer = await call_api(request, rt, "POST", _path(sid, "cancel"), body={"mode": mode})
    return await _relay(
        request, rt, operator, "membership_cancel", sid, status, answer, {"mode": mode}
    )


async def pause(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/subscriptions/{subscription_id}/pause``: paused at the end of the
    paid period."""
    sid = _subscription_id(request)
    status, answer = await call_api(request, rt, "POST", _path(sid, "pause"), body={})
    return await _relay(request, rt, operator, "membership_pause", sid, status, answer)


async def resume(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/subscriptions/{subscription_id}/resume``: the next period begins
    and is charged now (a pause not yet taken is dropped)."""
    sid = _subscription_id(request)
    status, answer = await call_api(request, rt, "POST", _path(sid, "resume"), body={})
    return await _relay(request, rt, operator, "membership_resume", sid, status, answer)
