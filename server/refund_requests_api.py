"""Customers' own refund requests, from their statement (``settlement.refunds``).

Routes (docs/refunds.md):

- ``POST /v1/customers/{customer}/tabs/{tab_id}/refund-requests`` — the cam site's backend
  relays what its customer asked on her statement: ``{"refund_id", "reason", "note"?,
  "lines"?: [line ids], "attachments"?: [{"filename"?, "content_base64"}]}``. Decided by the
  same policy as every refund (the model's consent where it needs it); idempotent by the
  client-minted ``refund_id`` (the same files must come again);
- ``GET /v1/customers/{customer}/tabs/{tab_id}/refunds`` — what the customer's statement shows:
  the lines with what may still be asked back, and every refund and request with its state;
- ``GET /v1/refunds/{refund_id}/attachments/{n}`` — an attachment, for support staff only (the
  support key besides the API key), as a download that no browser renders;
- ``POST`` / ``GET /demo/customers/{customer}/tabs/{tab_id}/…`` — the same two for the viewer
  page, for demo customers, when the demo backend runs (see :mod:`server.demo_api`).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from metering.lifecycle import TabState
from metering.outcomes import TabRef
from server import refunds_api
from server.api import ApiError, endpoint, json_body
from server.api_contract import CUSTOMER, TAB_ID
from server.demo_api import DEMO_ID_PREFIX, is_demo_id
from server.refunds_contract import (
    ATTACHMENT_N,
    ATTACHMENTS,
    NOTE,
    REASON,
    REFUND_ID,
    REQUEST_BYTES_MAX,
    REQUEST_LINES,
)
from server.runtime import Runtime
from settlement.refunds.attachments import Attachment, check
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest

#: How an attachment is served: a download, never a page, a script or an image of this site.
ATTACHMENT_HEADERS: Final = {
    "Content-Type": "application/octet-stream",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-store",
}


def _ref(request: Request) -> TabRef:
    customer, tab_id = request.path_params["customer"], request.path_params["tab_id"]
    return TabRef(CUSTOMER.check(customer), TAB_ID.check(tab_id))


def _attachments(raw: object) -> list[Attachment]:
    checked = []
    for item in ATTACHMENTS.check(raw) or []:
        encoded, filename = item["content_base64"], item.get("filename", "")
        try:
            content = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_field", "content_base64 is not base64") from None
        found = check(filename, content)
        if isinstance(found, str):
            raise ApiError(400, "attachment_refused", f"{filename or 'a file'}: {found}")
        checked.append(found)
    return checked


async def ask(request: Request, rt: Runtime, ref: TabRef) -> Response:
    """A customer's refund request for ``ref`` (the body as the module docstring says)."""
    body = await json_body(request, REQUEST_BYTES_MAX)
    refund_id = REFUND_ID.check(body.get("refund_id"))
    reason = Reason(REASON.check(body.get("reason")))
    note = "".join(ch for ch in NOTE.check(body.get("note", "")) if ch.isprintable() or ch == "\n")
    raw_lines = REQUEST_LINES.check(body.get("lines", []))
    attachments = _attachments(body.get("attachments"))
    service = refunds_api.service(request.app.state, rt)
    answer = await refunds_api.call_service(
        service.request(
            RefundRequest(
                refund_id,
                ref,
                reason,
                lines=dict.fromkeys(raw_lines),
                origin="customer",
                note=note,
                attachments=tuple(a.sha256 for a in attachments),
            ),
            attachments,
        )
    )
    view = await refunds_api.call_service(service.customer_view(ref.customer, ref.tab_id))
    mine = next(r for r in view["refunds"] if r["refund_id"] == refund_id)
    return JSONResponse(mine, status_code=201 if answer.created else 200)


async def handle_ask(request: Request, rt: Runtime) -> Response:
    """``POST /v1/customers/{customer}/tabs/{tab_id}/refund-requests``."""
    return await ask(request, rt, _ref(request))


async def handle_view(request: Request, rt: Runtime) -> Response:
    """``GET /v1/customers/{customer}/tabs/{tab_id}/refunds``."""
    ref = _ref(request)
    service = refunds_api.service(request.app.state, rt)
    try:
        view = await refunds_api.call_service(service.customer_view(ref.customer, ref.tab_id))
    except ApiError as error:
        tab = await rt.meter.tabs.read(ref) if error.code == "not_found" else None
        if tab is None or tab.state is not TabState.SETTLED:
            raise
        # Settled in Redis, its ledger record still being written by the worker: nothing can
        # have been refunded yet. The page reads again (``recorded: false``).
        view = {
            "customer": ref.customer,
            "tab_id": ref.tab_id,
            "recorded": False,
            "lines": [],
            "refunds": [],
        }
    return JSONResponse(view)


async def handle_attachment(request: Request, rt: Runtime) -> Response:
    """``GET /v1/refunds/{refund_id}/attachments/{n}``: support staff only, as a download."""
    if not refunds_api.is_support(request, rt):
        raise ApiError(403, "support_key_required", "attachments are served to support only")
    refund_id = REFUND_ID.check(request.path_params["refund_id"])
    raw_n = ATTACHMENT_N.check(request.path_params["n"])
    service = refunds_api.service(request.app.state, rt)
    found: dict[str, Any] = await refunds_api.call_service(
        service.attachment(refund_id, int(raw_n))
    )
    extension = {"image/png": "png", "image/jpeg": "jpg", "application/pdf": "pdf"}
    name = f"{refund_id}-{raw_n}.{extension[found['content_type']]}"
    return Response(
        bytes(found["content"]),
        headers={
            **ATTACHMENT_HEADERS,
            "Content-Disposition": f'attachment; filename="{name}"',
            "Tipmeter-Content-Type": found["content_type"],
            "Tipmeter-Sha256": found["sha256"],
        },
    )


def _demo(handler: Any, enabled: bool) -> Any:
    async def serve(request: Request, rt: Runtime) -> Response:
        if not enabled:
            raise ApiError(404, "demo_disabled", "the demo backend is off")
        if not is_demo_id(request.path_params["customer"]):
            raise ApiError(
                403, "not_a_demo_id", f"the demo acts on ids starting {DEMO_ID_PREFIX!r} only"
            )
        response: Response = await handler(request, rt)
        return response

    return serve


def routes(*, demo_enabled: bool) -> list[BaseRoute]:
    """The routes of customers' refund requests (and the demo's, for the viewer page)."""
    tab = "/customers/{customer}/tabs/{tab_id}"
    return [
        Route(
            f"/v1{tab}/refund-requests",
            endpoint("refund_request", handle_ask),
            methods=["POST"],
        ),
        Route(f"/v1{tab}/refunds", endpoint("tab_refunds", handle_view), methods=["GET"]),
        Route(
            "/v1/refunds/{refund_id}/attachments/{n}",
            endpoint("refund_attachment", handle_attachment),
            methods=["GET"],
        ),
        Route(
            f"/demo{tab}/refund-requests",
            endpoint("demo_refund_request", _demo(handle_ask, demo_enabled), authenticated=False),
            methods=["POST"],
        ),
        Route(
            f"/demo{tab}/refunds",
            endpoint("demo_tab_refunds", _demo(handle_view, demo_enabled), authenticated=False),
            methods=["GET"],
        ),
    ]
