"""Support actions and payment search, through the very HTTP API the cam site's backend calls.

Each console route here checks the operator's role, then sends the matching request of the HTTP
API (``/v1/…``) to this same app, in process (an ASGI call: no socket, but the same routing,
checks, policy, error codes and metrics), with the server's API key — and, for what the API
keeps to support (an override, clearing a flag), the first ``TIPMETER_SUPPORT_API_KEYS`` key:
without one configured, those answer ``403 support_key_required``, as they would to the cam
site. The operator's name goes where the API records who acted (``override.by``, ``by``).
Every action and every search is audited with the API's status.

The routes (docs/console.md has the table): ``GET /console/api/payments/{number}`` (read-only),
``POST /console/api/refunds`` (support; admin to override), ``POST
/console/api/collection/cases/{case_id}/links`` (support), ``POST
/console/api/customers/{customer}/flag/clear`` (support).
"""

from __future__ import annotations

import secrets
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message

from metering.keys import is_id
from server.api import ApiError, json_body
from server.console.auth import Role
from server.console.routes import CONSOLE_BODY_BYTES_MAX, Operator, write_audit
from server.refunds_api import NUMBER_CHARS_MAX, REASON_CHARS_MAX, SUPPORT_KEY_HEADER
from server.runtime import Runtime

#: Largest answer of the HTTP API the console relays (a payment's whole history).
ANSWER_BYTES_MAX: Final = 4_000_000


async def call_api(
    request: Request,
    rt: Runtime,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    query: dict[str, str] | None = None,
    support: bool = False,
) -> tuple[int, Any]:
    """Send one request of the HTTP API to this app, in process; its status and JSON body."""
    headers = [
        (b"authorization", f"Bearer {rt.settings.api_keys[0]}".encode()),
        (b"content-type", b"application/json"),
        (b"host", request.headers.get("host", "tipmeter").encode()),
    ]
    if support and rt.settings.support_api_keys:
        headers.append((SUPPORT_KEY_HEADER.encode(), rt.settings.support_api_keys[0].encode()))
    payload = orjson.dumps(body) if body is not None else b""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": request.url.scheme,
        "path": path,
        "raw_path": quote(path).encode(),
        "query_string": urlencode(query or {}).encode(),
        "root_path": "",
        "headers": headers,
        "client": request.client,
        "server": request.scope.get("server"),
    }
    sent = False
    status = 500
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if sum(map(len, chunks)) > ANSWER_BYTES_MAX:
                raise ApiError(502, "answer_too_large", "the API's answer is too large")

    await request.app(scope, receive, send)
    raw = b"".join(chunks)
    try:
        return status, orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return status, {"error": {"code": "not_json", "message": "the API answered no JSON"}}


async def _relay(
    request: Request,
    rt: Runtime,
    operator: Operator,
    action: str,
    target: str,
    status: int,
    answer: Any,
    detail: dict[str, Any] | None = None,
) -> Response:
    """Audit the action with the API's status, then answer what the API answered."""
    code = answer.get("error", {}).get("code") if isinstance(answer, dict) else None
    await write_audit(
        rt,
        operator_id=operator.operator_id,
        action=action,
        target=target,
        outcome="ok" if status < 400 else str(code or status),
        detail={"status": status, **(detail or {})},
        remote=operator.remote_addr,
    )
    return JSONResponse(answer, status_code=status)


async def find_payment(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``GET /console/api/payments/{number}``: a payment and its whole history."""
    number = request.path_params["number"]
    if not (0 < len(number) <= NUMBER_CHARS_MAX and number.isprintable() and "/" not in number):
        raise ApiError(400, "invalid_field", "a number is printable, 1..255 characters, no '/'")
    status, answer = await call_api(request, rt, "GET", f"/v1/payments/{number}")
    return await _relay(request, rt, operator, "payment_search", number, status, answer)


def _text(value: object, name: str) -> str:
    if not (isinstance(value, str) and 0 < len(value.strip()) <= REASON_CHARS_MAX):
        raise ApiError(400, "invalid_field", f"{name} is text of 1..{REASON_CHARS_MAX} characters")
    return value.strip()


async def refund(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/refunds`` ``{customer, tab_id, reason, amount_minor?, lines?,
    override_reason?}``: a refund by the site's policy; with ``override_reason`` (admins only),
    the policy overridden, the written reason recorded with it."""
    body = await json_body(request, CONSOLE_BODY_BYTES_MAX)
    customer, tab_id = body.get("customer"), body.get("tab_id")
    if not (is_id(customer) and is_id(tab_id)):
        raise ApiError(400, "invalid_id", "customer and tab_id are ids")
    ask: dict[str, Any] = {
        # Minted here and kept in the audit log, so the refund can be found by its id.
        "refund_id": f"console-{secrets.token_hex(8)}",
        "customer": customer,
        "tab_id": tab_id,
        "reason": body.get("reason"),
    }
    for name in ("amount_minor", "lines"):
        if body.get(name) is not None:
            ask[name] = body[name]
    override = body.get("override_reason")
    if override is not None:
        if not operator.role.allows(Role.ADMIN):
            await write_audit(
                rt,
                operator_id=operator.operator_id,
                action="refund",
                target=f"{customer}/{tab_id}",
                outcome="role_forbidden",
                detail={"override_reason": str(override)[:REASON_CHARS_MAX]},
                remote=operator.remote_addr,
            )
            raise ApiError(
                403, "role_forbidden", "overriding the refund policy needs the admin role"
            )
        ask["override"] = {"by": operator.operator_id, "reason": _text(override, "override_reason")}
    status, answer = await call_api(request, rt, "POST", "/v1/refunds", body=ask, support=True)
    detail = {k: v for k, v in ask.items() if k != "override"}
    if override is not None:
        detail["override_reason"] = ask["override"]["reason"]
    return await _relay(
        request, rt, operator, "refund", f"{customer}/{tab_id}", status, answer, detail
    )


async def create_link(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/collection/cases/{case_id}/links`` ``{email?, phone?, language?}``:
    a new pay link for a collection case (sent when a contact is given; the URL answered once)."""
    body = await json_body(request, CONSOLE_BODY_BYTES_MAX)
    case_id = request.path_params["case_id"]
    if not (0 < len(case_id) <= 200 and case_id.isprintable() and "/" not in case_id):
        raise ApiError(400, "invalid_id", "a case id is printable, 1..200 characters")
    ask = {k: body[k] for k in ("email", "phone", "language") if body.get(k) is not None}
    status, answer = await call_api(
        request, rt, "POST", f"/v1/collection/cases/{case_id}/links", body=ask
    )
    # The link's URL is a bearer secret: it goes to the operator's screen, not to the audit log.
    return await _relay(
        request, rt, operator, "pay_link", case_id, status, answer, {"sent_to": sorted(ask)}
    )


async def clear_flag(request: Request, rt: Runtime, operator: Operator) -> Response:
    """``POST /console/api/customers/{customer}/flag/clear``: support clears a dispute's flag."""
    customer = request.path_params["customer"]
    if not is_id(customer):
        raise ApiError(400, "invalid_id", "customer is an id")
    status, answer = await call_api(
        request,
        rt,
        "DELETE",
        f"/v1/customers/{customer}/flag",
        query={"by": operator.operator_id},
        support=True,
    )
    return await _relay(request, rt, operator, "clear_flag", customer, status, answer)
