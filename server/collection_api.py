"""The collection HTTP API: a case's state and history, online links, write-offs, the sweep.

Every route needs the API key (the cam site's backend and its agents' tools call it). The
pages the customer sees are :mod:`server.paylinks`.

- ``GET /v1/collection/cases/{case_id}`` — the case, its attempts and its history;
- ``POST /v1/collection/cases/{case_id}/links`` — online start: a new pay link for one case
  (``expiry_h`` or ``expiry_s``, ``opens_max`` (or ``null``), ``failed_max``, ``phone``,
  ``email``, ``language``, all optional); sends it at once by SMS and/or e-mail through the
  notifier, and answers the URL once, to be shown to copy (it is never stored or logged);
- ``POST /v1/collection/cases/{case_id}/write-off`` — give the debt up;
- ``GET /v1/customers/{customer}/tabs/{tab_id}/collection`` — the case of a failed tab;
- ``POST /v1/collection/batches`` — batch start: a CSV or JSON list, a per-row report;
- ``POST /v1/collection/sweep`` — run one sweep now (open cases, due retries, closings).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api import ApiError, field, json_body, read_body, route
from server.api_contract import nullable
from server.collection_contract import (
    BATCH_ID,
    CASE_ID,
    LANGUAGE,
    LINK_EMAIL,
    LINK_EXPIRY_H,
    LINK_EXPIRY_S,
    LINK_FAILED_MAX,
    LINK_OPENS_MAX,
    LINK_PHONE,
)
from server.runtime import Runtime
from settlement.collection import batch
from settlement.collection.collector import Collector, case_id_of
from settlement.collection.links import (
    LINK_EXPIRY_H_DEFAULT,
    LINK_FAILED_MAX_DEFAULT,
    LINK_OPENS_MAX_DEFAULT,
    LinkLimits,
)
from settlement.collection.outbox import Relay
from settlement.notify.base import Channel
from settlement.notify.templates import paylink_message

#: Largest uploaded list, in bytes.
BATCH_BYTES_MAX: Final = 1_048_576
_STATUSES: Final = ("created", "duplicate", "refused")


def collector_of(rt: Runtime) -> Collector:
    """The collector over this app's ledger, processors and webhook queue (each case change's
    webhook is written with it, into the outbox, and relayed right after the commit)."""
    relay = Relay(rt.ledger.database, rt.store, rt.settings.webhook_config())
    return Collector(rt.ledger, rt.processors, rt.settings.collection_config(), relay)


async def _case_or_404(collector: Collector, case_id: str) -> dict[str, Any]:
    found = await collector.case(CASE_ID.check(case_id))
    if found is None:
        raise ApiError(404, "case_not_found", f"no collection case {case_id}")
    return found


async def handle_read_case(request: Request, rt: Runtime) -> Response:
    """A case, its attempts and its history."""
    return JSONResponse(await _case_or_404(collector_of(rt), request.path_params["case_id"]))


async def handle_tab_case(request: Request, rt: Runtime) -> Response:
    """The case of a failed tab."""
    sid = f"{request.path_params['customer']}/{request.path_params['tab_id']}"
    return JSONResponse(await _case_or_404(collector_of(rt), case_id_of(sid)))


async def handle_create_link(request: Request, rt: Runtime) -> Response:
    """Online start: a new link for one case; the URL is answered once."""
    body = await json_body(request)
    if field(body, "expiry_s") is not None:
        expiry_s = LINK_EXPIRY_S.check(field(body, "expiry_s"))
    else:
        expiry_s = LINK_EXPIRY_H.check(field(body, "expiry_h", LINK_EXPIRY_H_DEFAULT)) * 3_600
    opens_max = nullable(LINK_OPENS_MAX).check(field(body, "opens_max", LINK_OPENS_MAX_DEFAULT))
    failed_max = LINK_FAILED_MAX.check(field(body, "failed_max", LINK_FAILED_MAX_DEFAULT))
    phone = nullable(LINK_PHONE).check(field(body, "phone"))
    email = nullable(LINK_EMAIL).check(field(body, "email"))
    language = LANGUAGE.check(field(body, "language", "en"))
    collector = collector_of(rt)
    case_id = request.path_params["case_id"]
    case = await _case_or_404(collector, case_id)
    if case["state"] in ("paid", "written_off"):
        raise ApiError(409, "case_closed", f"the case is {case['state']}")
    if phone or email or language != case["language"]:
        await collector.set_contact(case_id, str(phone or email or case["contact"]), language)
    now_ms = rt.meter.clock.now_ms()
    token = await collector.create_link(
        case_id, now_ms, LinkLimits(expiry_s=expiry_s, opens_max=opens_max, failed_max=failed_max)
    )
    base = str(request.base_url).rstrip("/")
    url = f"{base}/pay/{token}"
    sent = []
    notifier = rt.settings.notifier()
    for channel, to in ((Channel.SMS, phone), (Channel.EMAIL, email)):
        if to:
            message = paylink_message(
                channel,
                str(to),
                url=url,
                amount_minor=int(case["amount_minor"]),
                currency=str(case["currency"]),
                language=language,
            )
            result = await notifier.send(message)
            sent.append({"channel": str(channel), "code": str(result.code)})
    return JSONResponse(
        {
            "case_id": case_id,
            "url": url,
            "sent": sent,
            "expires_at_ms": now_ms + expiry_s * 1_000,
            "opens_max": opens_max,
            "failed_max": failed_max,
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def handle_batch(request: Request, rt: Runtime) -> Response:
    """Batch start: a list of customers who owe money (CSV or JSON); each good row gets a case,
    a receivable entry and a link (whole or not at all) and is sent; each bad row is explained.
    The Idempotency-Key names the batch: the same list uploaded again creates nothing twice."""
    batch_id = BATCH_ID.check(request.headers.get("idempotency-key", ""))
    body = await read_body(request, BATCH_BYTES_MAX, "lists")
    try:
        good, bad = batch.parse(body, request.headers.get("content-type", ""))
    except batch.BatchFormatError as exc:
        raise ApiError(400, "malformed_batch", str(exc)) from None
    collector = collector_of(rt)
    notifier = rt.settings.notifier()
    processor = rt.processors.names[0]
    base = str(request.base_url).rstrip("/")
    now_ms = rt.meter.clock.now_ms()
    report: list[dict[str, Any]] = [
        {"row": r.number, "status": "refused", "errors": list(r.errors)} for r in bad
    ]
    for row in good:
        case_id, token = await collector.open_uploaded(batch_id, row, processor, now_ms)
        if token is None:
            report.append({"row": row.number, "status": "duplicate", "case_id": case_id})
            continue
        url = f"{base}/pay/{token}"
        channel, to = (Channel.SMS, row.phone) if row.phone else (Channel.EMAIL, row.email)
        message = paylink_message(
            channel,
            to,
            url=url,
            amount_minor=row.amount_minor,
            currency=row.currency,
            language=row.language,
        )
        result = await notifier.send(message)
        report.append(
            {
                "row": row.number,
                "status": "created",
                "case_id": case_id,
                "sent": {"channel": str(channel), "code": str(result.code)},
            }
        )
    report.sort(key=lambda entry: int(entry["row"]))
    counts = {status: sum(1 for e in report if e["status"] == status) for status in _STATUSES}
    return JSONResponse({"batch_id": batch_id, **counts, "rows": report}, status_code=200)


async def handle_write_off(request: Request, rt: Runtime) -> Response:
    """Give a debt up."""
    collector = collector_of(rt)
    case_id = request.path_params["case_id"]
    await _case_or_404(collector, case_id)
    if not await collector.write_off(case_id, rt.meter.clock.now_ms()):
        raise ApiError(409, "not_written_off", "the case is closed or a payment is in flight")
    return JSONResponse(await _case_or_404(collector, case_id))


async def handle_sweep(_request: Request, rt: Runtime) -> Response:
    """Run one collection sweep now."""
    report = await collector_of(rt).sweep(rt.meter.clock.now_ms())
    return JSONResponse(report.counts())


def routes() -> list[Route]:
    """The collection API's routes."""
    return [
        route("GET", "/v1/collection/cases/{case_id}", "read_collection_case", handle_read_case),
        route(
            "POST", "/v1/collection/cases/{case_id}/links", "create_pay_link", handle_create_link
        ),
        route(
            "POST", "/v1/collection/cases/{case_id}/write-off", "write_off_case", handle_write_off
        ),
        route(
            "GET",
            "/v1/customers/{customer}/tabs/{tab_id}/collection",
            "read_tab_collection",
            handle_tab_case,
        ),
        route("POST", "/v1/collection/sweep", "collection_sweep", handle_sweep),
        route("POST", "/v1/collection/batches", "collection_batch", handle_batch),
    ]
