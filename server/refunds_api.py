"""The HTTP API of refunds, disputes and payment search (``settlement.refunds``).

Routes (docs/refunds.md has the flows, docs/http-api.md the list):

- ``POST /v1/refunds`` — refund a settled tab, chosen lines of it, or an amount; idempotent by
  the client-minted ``refund_id``. Support's ``override`` needs the ``Tipmeter-Support-Key``
  header (``TIPMETER_SUPPORT_API_KEYS``), besides the API key;
- ``GET /v1/refunds/{refund_id}``; ``POST /v1/refunds/{refund_id}/consent`` (the model's
  answer, as her console's backend relays it);
- ``POST /v1/disputes/notices/{processor}`` — a processor's signed dispute notice (no API key:
  the signature, with ``TIPMETER_DISPUTE_SECRETS``, is the credential);
- ``POST /v1/sandbox/disputes`` — the sandbox raises a dispute for any capture;
- ``GET /v1/disputes/{id}``, ``…/evidence`` (JSON), ``…/evidence.html`` (printable);
- ``GET /v1/disputes/ratio?month=YYYY-MM`` — per processor, with the alert level;
- ``GET`` / ``DELETE /v1/customers/{customer}/flag`` — a dispute's flag (clearing it needs the
  support key);
- ``GET /v1/payments/{number}`` — a tab and its whole history from any number.

Every handler reads the request (checked with the params of :mod:`server.refunds_contract`,
which /openapi.json draws), calls :class:`settlement.refunds.service.Refunds`, and shapes the
answer; the errors are those of :mod:`server.api`.
"""

from __future__ import annotations

import hmac
import html
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Final

from prometheus_client import Gauge
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from metering.outcomes import TabRef
from server.api import ApiError, json_body, read_body, route
from server.api_contract import CUSTOMER, ROOM, TAB_ID, id_param, nullable
from server.refunds_contract import (
    ACCEPT,
    BY,
    DISPUTE_ID,
    DISPUTE_STATUS,
    MONTH,
    NOTICE_PROCESSOR,
    NUMBER,
    OVERRIDE,
    REASON,
    REFUND_AMOUNT,
    REFUND_CAPTURE_ID,
    REFUND_ID,
    REFUND_LINES,
    SANDBOX_FEE,
    SANDBOX_FEE_MINOR_DEFAULT,
    WRITTEN_REASON,
)

# Re-exported: the console's support actions read these two bounds from here.
from server.refunds_contract import NUMBER_CHARS_MAX as NUMBER_CHARS_MAX
from server.refunds_contract import REASON_CHARS_MAX as REASON_CHARS_MAX
from server.runtime import Runtime
from settlement import webhooks
from settlement.errors import InvalidSignature
from settlement.refunds.errors import NotRefundable, RefundIdReused, RefundNotFound
from settlement.refunds.notices import (
    NOTICE_BYTES_MAX,
    NoticeMalformed,
    read_notice,
    sandbox_notice,
    signed_headers,
)
from settlement.refunds.policy import ModelShare, Reason
from settlement.refunds.service import RefundRequest, Refunds

SUPPORT_KEY_HEADER: Final = "tipmeter-support-key"


def _service(request: Request, rt: Runtime) -> Refunds:
    """The app's refunds service (:func:`service`)."""
    return service(request.app.state, rt)


def service(state: State, rt: Runtime) -> Refunds:
    """The app's refunds service, built on first use from the runtime and the environment
    (kept on the app's ``state``: the HTTP routes and the consoles' consent share it)."""
    built = getattr(state, "refunds", None)
    if isinstance(built, Refunds):
        return built
    config = rt.settings.webhook_config()

    async def announce(kind: str, subject: str, data: Any) -> None:
        if config.enabled:
            await webhooks.enqueue(rt.store, config, kind, subject, data, rt.meter.clock.now_ms())

    built = Refunds(
        rt.ledger.database,
        rt.processors.for_processor,
        rt.meter.clock,
        rt.settings.refund_policy(),
        announce=announce,
        flag_on_dispute=rt.settings.dispute_flag == "on",
        dispute_model_share=ModelShare(rt.settings.dispute_model_share),
    )
    state.refunds = built
    state.dispute_ratio = Gauge(
        "tipmeter_dispute_ratio",
        "Disputes opened over captured settlements this calendar month, per processor.",
        ["processor"],
        registry=rt.metrics.registry,
    )
    return built


def is_support(request: Request, rt: Runtime) -> bool:
    keys = rt.settings.support_api_keys
    given = request.headers.get(SUPPORT_KEY_HEADER, "")
    return bool(given) and any(hmac.compare_digest(given.encode(), k.encode()) for k in keys)


async def call_service(coro: Any) -> Any:
    """Await a service call, its exceptions as API errors."""
    try:
        return await coro
    except RefundNotFound as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    except RefundIdReused as exc:
        raise ApiError(409, "id_reused", str(exc)) from None
    except NotRefundable as exc:
        raise ApiError(409, "not_refundable", str(exc)) from None


async def handle_create_refund(request: Request, rt: Runtime) -> Response:
    """``POST /v1/refunds``: 201 with the refund (its decision and status); 200 for a repeat."""
    body = await json_body(request)
    refund_id = REFUND_ID.check(body.get("refund_id"))
    reason = Reason(REASON.check(body.get("reason")))
    customer, tab_id = body.get("customer"), body.get("tab_id")
    service = _service(request, rt)
    if "capture_id" in body and tab_id is None:
        capture = REFUND_CAPTURE_ID.check(body.get("capture_id"))
        found = await rt.ledger.find_capture(capture)
        if found is None:
            raise ApiError(404, "not_found", f"no capture {capture}")
        customer, tab_id = found.customer, found.tab_id
    ref = TabRef(CUSTOMER.check(customer), TAB_ID.check(tab_id))
    lines: dict[str, int | None] = {}
    for item in REFUND_LINES.check(body.get("lines", [])):
        if isinstance(item, dict):
            lines[item["line_id"]] = item.get("amount_minor")
        else:
            lines[item] = None
    amount_minor = nullable(REFUND_AMOUNT).check(body.get("amount_minor"))
    override = body.get("override")
    by = override_reason = ""
    if override is not None:
        if not is_support(request, rt):
            raise ApiError(
                403, "support_key_required", "an override needs the Tipmeter-Support-Key header"
            )
        OVERRIDE.check(override)
        by, override_reason = override["by"], override["reason"]
    answer = await call_service(
        service.request(
            RefundRequest(
                refund_id,
                ref,
                reason,
                lines=lines,
                amount_minor=amount_minor,
                override_by=by,
                override_reason=override_reason,
            )
        )
    )
    return JSONResponse(answer.body, status_code=201 if answer.created else 200)


async def handle_read_refund(request: Request, rt: Runtime) -> Response:
    """``GET /v1/refunds/{refund_id}``."""
    refund_id = REFUND_ID.check(request.path_params["refund_id"])
    return JSONResponse(await call_service(_service(request, rt).read(refund_id)))


async def handle_consent(request: Request, rt: Runtime) -> Response:
    """``POST /v1/refunds/{refund_id}/consent``: ``{"accept": bool, "by": model id, "room"?:
    the room she answers for (none: the answer stands for every room asked)}``. With the
    support key, support staff answer (``by`` is theirs), also an escalated request."""
    refund_id = REFUND_ID.check(request.path_params["refund_id"])
    body = await json_body(request)
    accept = ACCEPT.check(body.get("accept"))
    by = BY.check(body.get("by"))
    room = ROOM.check(body["room"]) if "room" in body else None
    # Support staff (their key) answer an escalated request, for every room asked.
    support = is_support(request, rt)
    answer = await call_service(
        _service(request, rt).consent(
            refund_id,
            accept=accept,
            by=f"support:{by}" if support else f"model:{by}",
            room=None if support else room,
            support=support,
        )
    )
    return JSONResponse(answer.body)


async def handle_dispute_notice(request: Request, rt: Runtime) -> Response:
    """``POST /v1/disputes/notices/{processor}``: a signed notice (200 once recorded)."""
    processor = NOTICE_PROCESSOR.check(request.path_params["processor"])
    secret = rt.settings.dispute_secret(processor)
    if not secret or processor not in rt.processors.gateways():
        raise ApiError(404, "not_found", f"no dispute notices are taken for {processor}")
    raw = await read_body(request, NOTICE_BYTES_MAX, "notices")
    return await _record_notice(request, rt, processor, raw, dict(request.headers), secret)


async def _record_notice(
    request: Request,
    rt: Runtime,
    processor: str,
    raw: bytes,
    headers: dict[str, str],
    secret: str,
) -> Response:
    try:
        notice = read_notice(processor, raw, headers, secret, now_s=int(time.time()))
    except InvalidSignature as exc:
        raise ApiError(400, "invalid_signature", str(exc)) from None
    except NoticeMalformed as exc:
        raise ApiError(400, "malformed_notice", str(exc)) from None
    service = _service(request, rt)
    answer = await call_service(service.dispute(notice))
    await _update_gauge(request, rt, service)
    return JSONResponse(answer.body, status_code=201 if answer.created else 200)


async def handle_sandbox_dispute(request: Request, rt: Runtime) -> Response:
    """``POST /v1/sandbox/disputes``: the sandbox raises (or closes) a dispute of a capture:
    ``{"capture_id", "dispute_id"?, "amount_minor"?, "fee_minor"?, "status"?}``. The notice is
    signed and read exactly as a processor's would be."""
    body = await json_body(request)
    capture_id = REFUND_CAPTURE_ID.check(body.get("capture_id"))
    found = await rt.ledger.find_capture(capture_id)
    if found is None:
        raise ApiError(404, "not_found", f"no capture {capture_id}")
    settled = await rt.ledger.read_tab(found)
    assert settled is not None
    tab, record = settled
    status = DISPUTE_STATUS.check(body.get("status", "open"))
    fee = SANDBOX_FEE.check(body.get("fee_minor", SANDBOX_FEE_MINOR_DEFAULT))
    processor = tab.processor or rt.processors.default_name
    dispute_id = body.get("dispute_id", f"dp_{record.capture_id}")
    raw = sandbox_notice(
        dispute_id=id_param("dispute_id").check(dispute_id),
        capture_id=record.capture_id,
        currency=tab.currency,
        amount_minor=REFUND_AMOUNT.check(body.get("amount_minor", record.captured_minor)),
        fee_minor=fee,
        reason=WRITTEN_REASON.check(body.get("reason", "fraudulent")),
        status=status,
        created_ms=rt.meter.clock.now_ms(),
    )
    # Signed with a secret of this request's own: the notice takes the very path (signature
    # checked, then read) a processor's does.
    secret = secrets.token_hex(16)
    headers = signed_headers(raw, secret, int(time.time()))
    return await _record_notice(request, rt, processor, raw, headers, secret)


async def handle_read_dispute(request: Request, rt: Runtime) -> Response:
    """``GET /v1/disputes/{dispute_id}``."""
    dispute_id = DISPUTE_ID.check(request.path_params["dispute_id"])
    return JSONResponse(await call_service(_service(request, rt).read_dispute(dispute_id)))


async def handle_evidence(request: Request, rt: Runtime) -> Response:
    """``GET /v1/disputes/{dispute_id}/evidence``: the evidence package, JSON."""
    dispute_id = DISPUTE_ID.check(request.path_params["dispute_id"])
    return JSONResponse(await call_service(_service(request, rt).evidence(dispute_id)))


async def handle_evidence_page(request: Request, rt: Runtime) -> Response:
    """``GET /v1/disputes/{dispute_id}/evidence.html``: the same package, printable."""
    dispute_id = DISPUTE_ID.check(request.path_params["dispute_id"])
    evidence = await call_service(_service(request, rt).evidence(dispute_id))
    return HTMLResponse(evidence_page(evidence))


def evidence_page(evidence: dict[str, Any]) -> str:
    """A printable page of an evidence package (every value escaped)."""

    def table(title: str, rows: list[dict[str, Any]]) -> str:
        if not rows:
            return f"<h2>{html.escape(title)}</h2><p>none</p>"
        heads = list(rows[0])
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in heads)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(str(row.get(h, '')))}</td>" for h in heads)
            + "</tr>"
            for row in rows
        )
        return f"<h2>{html.escape(title)}</h2><table><tr>{head}</tr>{body}</table>"

    dispute = evidence["dispute"]
    statement = evidence["statement"]
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Evidence {html.escape(dispute['dispute_id'])}</title>"
        "<style>body{font:12px sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 6px}</style></head><body>"
        f"<h1>Dispute {html.escape(dispute['dispute_id'])}</h1>"
        f"<p>Customer {html.escape(evidence['customer'])}, tab {html.escape(evidence['tab_id'])}"
        f", processor {html.escape(evidence['processor'])}</p>"
        + table("Dispute", [{k: v for k, v in dispute.items() if k != "lines"}])
        + table("Holds", evidence["holds"])
        + table("Capture", [evidence["capture"]])
        + table("Lines", evidence["lines"])
        + table("Shows", evidence["shows"])
        + table("Tips", evidence["tips"])
        + table("Statement shown", [{k: v for k, v in statement.items() if k != "lines"}])
        + table(
            "Refunds", [{k: v for k, v in r.items() if k != "lines"} for r in evidence["refunds"]]
        )
        + "</body></html>"
    )


def _month(value: str | None, now_ms: int) -> tuple[datetime, datetime, str]:
    if value is None:
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        year, month = now.year, now.month
    else:
        year, month = (int(part) for part in MONTH.check(value).split("-"))
    since = datetime(year, month, 1, tzinfo=UTC)
    until = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return since, until, f"{year:04d}-{month:02d}"


async def _ratios(service: Refunds, month: str | None, alert_bp: int) -> dict[str, Any]:
    since, until, name = _month(month, service.clock.now_ms())
    alert = alert_bp / 10_000
    rows = await service.dispute_ratios(since, until)
    processors = []
    for row in rows:
        ratio = row["disputes"] / row["settled"] if row["settled"] else 0.0
        processors.append(
            {
                "processor": row["processor"],
                "settled": row["settled"],
                "disputes": row["disputes"],
                "ratio": ratio,
                "alert": ratio > alert or (row["disputes"] > 0 and not row["settled"]),
            }
        )
    return {"month": name, "alert_level": alert, "processors": processors}


async def _update_gauge(request: Request, rt: Runtime, service: Refunds) -> None:
    gauge = getattr(request.app.state, "dispute_ratio", None)
    if isinstance(gauge, Gauge):
        ratios = await _ratios(service, None, rt.settings.dispute_ratio_alert_bp)
        for row in ratios["processors"]:
            gauge.labels(row["processor"]).set(row["ratio"])


async def handle_dispute_ratio(request: Request, rt: Runtime) -> Response:
    """``GET /v1/disputes/ratio?month=YYYY-MM`` (default: this month)."""
    service = _service(request, rt)
    ratios = await _ratios(
        service, request.query_params.get("month"), rt.settings.dispute_ratio_alert_bp
    )
    await _update_gauge(request, rt, service)
    return JSONResponse(ratios)


async def handle_read_flag(request: Request, rt: Runtime) -> Response:
    """``GET /v1/customers/{customer}/flag``: the standing flag, or 404."""
    customer = CUSTOMER.check(request.path_params["customer"])
    flag = await _service(request, rt).flagged(customer)
    if flag is None:
        raise ApiError(404, "not_found", f"customer {customer} is not flagged")
    return JSONResponse(
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in flag.items()}
    )


async def handle_clear_flag(request: Request, rt: Runtime) -> Response:
    """``DELETE /v1/customers/{customer}/flag``: support clears it (``?by=<support id>``)."""
    customer = CUSTOMER.check(request.path_params["customer"])
    if not is_support(request, rt):
        raise ApiError(403, "support_key_required", "clearing a flag needs the support key")
    by = BY.check(request.query_params.get("by"))
    if not await _service(request, rt).clear_flag(customer, by):
        raise ApiError(404, "not_found", f"customer {customer} is not flagged")
    return JSONResponse({"customer": customer, "cleared_by": by})


async def handle_find_payment(request: Request, rt: Runtime) -> Response:
    """``GET /v1/payments/{number}``: the tab a number names, and its whole history."""
    number = NUMBER.check(request.path_params["number"])
    return JSONResponse(await call_service(_service(request, rt).find_payment(number)))


def routes() -> list[Route]:
    """The routes of refunds, disputes and payment search."""
    return [
        route("POST", "/v1/refunds", "create_refund", handle_create_refund),
        route("GET", "/v1/refunds/{refund_id}", "read_refund", handle_read_refund),
        route("POST", "/v1/refunds/{refund_id}/consent", "refund_consent", handle_consent),
        route(
            "POST",
            "/v1/disputes/notices/{processor}",
            "dispute_notice",
            handle_dispute_notice,
            authenticated=False,
        ),
        route("POST", "/v1/sandbox/disputes", "sandbox_dispute", handle_sandbox_dispute),
        route("GET", "/v1/disputes/ratio", "dispute_ratio", handle_dispute_ratio),
        route("GET", "/v1/disputes/{dispute_id}", "read_dispute", handle_read_dispute),
        route("GET", "/v1/disputes/{dispute_id}/evidence", "dispute_evidence", handle_evidence),
        route(
            "GET",
            "/v1/disputes/{dispute_id}/evidence.html",
            "dispute_evidence_page",
            handle_evidence_page,
        ),
        route("GET", "/v1/customers/{customer}/flag", "read_flag", handle_read_flag),
        route("DELETE", "/v1/customers/{customer}/flag", "clear_flag", handle_clear_flag),
        route("GET", "/v1/payments/{number}", "find_payment", handle_find_payment),
    ]
