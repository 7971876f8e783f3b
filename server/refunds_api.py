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

Every handler reads the request, calls :class:`settlement.refunds.service.Refunds`, and
shapes the answer; the errors are those of :mod:`server.api`.
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

from clients.ids import ID_PATTERN
from metering.keys import is_id
from metering.outcomes import TabRef
from server.api import ApiError, json_body, read_body, route
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
#: Longest a written reason (an override, a consent) may be, in characters.
REASON_CHARS_MAX: Final = 500
#: Longest number ``GET /v1/payments/{number}`` looks for.
NUMBER_CHARS_MAX: Final = 255
#: Line ids named by one refund request at most.
LINES_MAX: Final = 1_000
_REASONS: Final = {reason.value: reason for reason in Reason}


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


def _text(value: object, name: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not (isinstance(value, str) and 0 < len(value) <= REASON_CHARS_MAX and value.isprintable()):
        raise ApiError(
            400, "invalid_field", f"{name} must be printable text, 1..{REASON_CHARS_MAX}"
        )
    return value


def valid_id(value: object, name: str) -> str:
    if not is_id(value):
        raise ApiError(400, "invalid_id", f"{name} must match {ID_PATTERN.pattern}")
    return str(value)


def _amount(value: object, name: str) -> int:
    if type(value) is not int or value <= 0:
        raise ApiError(400, "invalid_amount", f"{name} must be a positive integer of minor units")
    return value


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
    refund_id = valid_id(body.get("refund_id"), "refund_id")
    raw_reason = body.get("reason")
    reason = _REASONS.get(raw_reason) if isinstance(raw_reason, str) else None
    if reason is None:
        raise ApiError(400, "invalid_field", f"reason must be one of {', '.join(_REASONS)}")
    customer, tab_id = body.get("customer"), body.get("tab_id")
    service = _service(request, rt)
    if "capture_id" in body and tab_id is None:
        capture = body.get("capture_id")
        found = await rt.ledger.find_capture(capture) if isinstance(capture, str) else None
        if found is None:
            raise ApiError(404, "not_found", f"no capture {capture}")
        customer, tab_id = found.customer, found.tab_id
    ref = TabRef(valid_id(customer, "customer"), valid_id(tab_id, "tab_id"))
    raw_lines = body.get("lines", [])
    if not (isinstance(raw_lines, list) and len(raw_lines) <= LINES_MAX):
        raise ApiError(400, "invalid_field", f"lines must be a list of at most {LINES_MAX}")
    lines: dict[str, int | None] = {}
    for item in raw_lines:
        line_id = item.get("line_id") if isinstance(item, dict) else item
        if not (isinstance(line_id, str) and 0 < len(line_id) <= 80):
            raise ApiError(
                400, "invalid_field", "each line is a line id or {line_id, amount_minor}"
            )
        amount = item.get("amount_minor") if isinstance(item, dict) else None
        lines[line_id] = None if amount is None else _amount(amount, "amount_minor")
    amount_minor = body.get("amount_minor")
    if amount_minor is not None:
        amount_minor = _amount(amount_minor, "amount_minor")
    override = body.get("override")
    by = override_reason = ""
    if override is not None:
        if not is_support(request, rt):
            raise ApiError(
                403, "support_key_required", "an override needs the Tipmeter-Support-Key header"
            )
        if not isinstance(override, dict):
            raise ApiError(400, "invalid_field", "override is {by, reason}")
        by = valid_id(override.get("by"), "override.by")
        override_reason = _text(override.get("reason"), "override.reason")
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
    refund_id = valid_id(request.path_params["refund_id"], "refund_id")
    return JSONResponse(await call_service(_service(request, rt).read(refund_id)))


async def handle_consent(request: Request, rt: Runtime) -> Response:
    """``POST /v1/refunds/{refund_id}/consent``: ``{"accept": bool, "by": model id, "room"?:
    the room she answers for (none: the answer stands for every room asked)}``. With the
    support key, support staff answer (``by`` is theirs), also an escalated request."""
    refund_id = valid_id(request.path_params["refund_id"], "refund_id")
    body = await json_body(request)
    accept = body.get("accept")
    if type(accept) is not bool:
        raise ApiError(400, "invalid_field", "accept must be true or false")
    by = valid_id(body.get("by"), "by")
    room = valid_id(body["room"], "room") if "room" in body else None
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
    processor = valid_id(request.path_params["processor"], "processor")
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
    capture_id = body.get("capture_id")
    found = await rt.ledger.find_capture(capture_id) if isinstance(capture_id, str) else None
    if found is None:
        raise ApiError(404, "not_found", f"no capture {capture_id}")
    settled = await rt.ledger.read_tab(found)
    assert settled is not None
    tab, record = settled
    status = body.get("status", "open")
    if status not in ("open", "won", "lost"):
        raise ApiError(400, "invalid_field", "status must be open, won or lost")
    fee = body.get("fee_minor", 1_500)
    if type(fee) is not int or fee < 0:
        raise ApiError(400, "invalid_amount", "fee_minor must be a whole number of minor units")
    processor = tab.processor or rt.processors.default_name
    raw = sandbox_notice(
        dispute_id=valid_id(body.get("dispute_id", f"dp_{record.capture_id}"), "dispute_id"),
        capture_id=record.capture_id,
        currency=tab.currency,
        amount_minor=_amount(body.get("amount_minor", record.captured_minor), "amount_minor"),
        fee_minor=fee,
        reason=_text(body.get("reason", "fraudulent"), "reason"),
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
    dispute_id = _text(request.path_params["dispute_id"], "dispute_id")
    return JSONResponse(await call_service(_service(request, rt).read_dispute(dispute_id)))


async def handle_evidence(request: Request, rt: Runtime) -> Response:
    """``GET /v1/disputes/{dispute_id}/evidence``: the evidence package, JSON."""
    dispute_id = _text(request.path_params["dispute_id"], "dispute_id")
    return JSONResponse(await call_service(_service(request, rt).evidence(dispute_id)))


async def handle_evidence_page(request: Request, rt: Runtime) -> Response:
    """``GET /v1/disputes/{dispute_id}/evidence.html``: the same package, printable."""
    dispute_id = _text(request.path_params["dispute_id"], "dispute_id")
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
        try:
            year, month = (int(part) for part in value.split("-"))
            datetime(year, month, 1, tzinfo=UTC)
        except ValueError:
            raise ApiError(400, "invalid_field", "month must be YYYY-MM") from None
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
    customer = valid_id(request.path_params["customer"], "customer")
    flag = await _service(request, rt).flagged(customer)
    if flag is None:
        raise ApiError(404, "not_found", f"customer {customer} is not flagged")
    return JSONResponse(
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in flag.items()}
    )


async def handle_clear_flag(request: Request, rt: Runtime) -> Response:
    """``DELETE /v1/customers/{customer}/flag``: support clears it (``?by=<support id>``)."""
    customer = valid_id(request.path_params["customer"], "customer")
    if not is_support(request, rt):
        raise ApiError(403, "support_key_required", "clearing a flag needs the support key")
    by = valid_id(request.query_params.get("by"), "by")
    if not await _service(request, rt).clear_flag(customer, by):
        raise ApiError(404, "not_found", f"customer {customer} is not flagged")
    return JSONResponse({"customer": customer, "cleared_by": by})


async def handle_find_payment(request: Request, rt: Runtime) -> Response:
    """``GET /v1/payments/{number}``: the tab a number names, and its whole history."""
    number = request.path_params["number"]
    if not (0 < len(number) <= NUMBER_CHARS_MAX and number.isprintable()):
        raise ApiError(400, "invalid_field", "the number is printable, 1..255 characters")
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
