"""The subscriptions HTTP API: plans, sign-up, plan changes, cancellation, the card on file,
reading a subscription and its invoices (docs/subscriptions.md).

Every route needs the API key (the cam site's backend calls it). A sign-up carries the card
token the processor's own page returned; the first period's charge is made by the renewal
scheduler, which this API runs for that one subscription before it answers, so the answer
shows how the first charge went.

- ``POST /v1/plans`` — create a plan (the same definition again: 200; another one: 409);
- ``GET /v1/plans/{plan_id}`` — a plan;
- ``POST /v1/subscriptions`` — sign up (``Idempotency-Key`` names the subscription);
- ``GET /v1/subscriptions/{subscription_id}`` — the subscription, its periods and history;
- ``POST /v1/subscriptions/{subscription_id}/change`` — ``{"plan_id": …}``, prorated;
- ``POST /v1/subscriptions/{subscription_id}/items`` — ``{"quantity": N, "addons": […]}``,
  prorated;
- ``POST /v1/subscriptions/{subscription_id}/cancel`` — ``{"mode": "now"|"period_end"|"notice"}``;
- ``POST /v1/subscriptions/{subscription_id}/pause`` — pause at the end of the paid period;
- ``POST /v1/subscriptions/{subscription_id}/resume`` — resume: the next period begins and is
  charged now;
- ``POST /v1/subscriptions/{subscription_id}/card`` — a new card on file (a past-due period is
  retried with it at once);
- ``POST /v1/subscriptions/{subscription_id}/pay-link`` — a pay link for the period a past-due
  subscription owes (a collection case of origin ``membership``);
- ``GET /v1/subscriptions/{subscription_id}/invoices`` — its invoices with lines and tax;
- ``GET /v1/customers/{customer}/subscriptions`` — a customer's subscriptions;
- ``POST /v1/subscriptions/run`` — run the due renewals now (the worker runs them anyway);
- ``GET /v1/exports/invoices?since=…&until=…&format=plain|datev`` — the accountants' export
  (also ``tipmeter export``);
- ``GET /v1/invoices?customer=…[&before_ms=…]`` — a customer's invoices and credit notes (of
  memberships and of Post Pay captures and refunds), newest first;
- ``GET /v1/invoices/{invoice_id}`` — one invoice or credit note with its lines.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from datetime import datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metering.keys import is_id
from metering.money import is_currency
from metering.outcomes import TabRef
from server.api import ApiError, endpoint, field, json_body, reserve_allowances
from server.collection_api import collector_of
from server.collection_contract import LINK_EXPIRY_H
from server.config import Settings
from server.reconcile import parse_instant
from server.runtime import Runtime
from settlement.collection.links import LINK_EXPIRY_H_DEFAULT
from settlement.ledger import invoices
from settlement.ledger.ledger import Ledger
from settlement.subscriptions import export, paylink, store
from settlement.subscriptions.config import LIST_MAX_DEFAULT
from settlement.subscriptions.errors import PlanInvalid
from settlement.subscriptions.plans import ADDONS_MAX, QUANTITY_MAX, plan_from_json
from settlement.subscriptions.scheduler import Renewals
from settlement.subscriptions.service import (
    CancelMode,
    NewSubscription,
    Result,
    SubCode,
    Subscriptions,
    subscription_json,
    valid_card_expires,
)

#: The answer's status for each business outcome that is not a success.
_STATUS: Final = {
    SubCode.NOT_FOUND: 404,
    SubCode.PLAN_UNKNOWN: 422,
    SubCode.CURRENCY_NOT_SOLD: 422,
    SubCode.NO_PROCESSOR: 422,
    SubCode.ALREADY_SUBSCRIBED: 409,
    SubCode.NOT_ALLOWED: 409,
    SubCode.PLAN_INCOMPATIBLE: 409,
    SubCode.CHARGE_IN_FLIGHT: 409,
    SubCode.ITEMS_INVALID: 422,
}
#: Longest free-text field accepted (evidence, e-mail address).
TEXT_CHARS_MAX: Final = 200
LANGUAGES: Final = ("en", "de", "it", "lt")
#: How long a sign-up or a new card waits for a charge another worker is making (the worker's
#: periodic loop may have claimed the subscription first), and how often it looks.
CHARGE_WAIT_S_MAX: Final = 10.0
CHARGE_WAIT_POLL_S: Final = 0.05


def service_of(rt: Runtime) -> Subscriptions:
    """The subscriptions service over this app's ledger and processors."""
    return Subscriptions(rt.ledger.database, rt.processors, meter_store=rt.store)


def renewals_of(rt: Runtime) -> Renewals:
    """The renewal scheduler over this app's ledger and processors, its notices sent through
    the deployment's notifier."""
    renewals = Renewals(rt.ledger.database, rt.processors)
    renewals.notify_with(rt.settings.notifier())
    return renewals


def subscription_id_for(customer: str, idempotency_key: str) -> str:
    """The subscription a sign-up with this Idempotency-Key creates (stable across retries)."""
    digest = hashlib.sha256(f"sub\x00{customer}\x00{idempotency_key}".encode()).digest()[:16]
    return "sub_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _refused(code: SubCode) -> ApiError:
    name = "subscription_not_found" if code is SubCode.NOT_FOUND else str(code)
    return ApiError(_STATUS.get(code, 409), name, f"refused: {name}")


def _items(body: dict[str, Any]) -> tuple[int, tuple[tuple[str, int], ...]]:
    """``quantity`` (default 1) and ``addons`` (``[{"addon_id", "quantity"}]``) of a body;
    whether the plan offers them is the service's to say (``items_invalid``)."""
    quantity = field(body, "quantity", 1)
    if type(quantity) is not int or not 1 <= quantity <= QUANTITY_MAX:
        raise ApiError(400, "invalid_field", f"quantity must be an integer in 1..{QUANTITY_MAX}")
    raw = field(body, "addons", [])
    if not isinstance(raw, list) or len(raw) > ADDONS_MAX:
        raise ApiError(400, "invalid_field", f"addons must be a list of at most {ADDONS_MAX}")
    addons = []
    for entry in raw:
        count = entry.get("quantity", 1) if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or not is_id(entry.get("addon_id"))
            or type(count) is not int
            or not 1 <= count <= QUANTITY_MAX
        ):
            raise ApiError(400, "invalid_field", 'addons: [{"addon_id": id, "quantity": 1..}] each')
        addons.append((str(entry["addon_id"]), count))
    return quantity, tuple(addons)


def _text(body: dict[str, Any], name: str, default: str = "", *, required: bool = False) -> str:
    value = field(body, name, default)
    if not isinstance(value, str) or len(value) > TEXT_CHARS_MAX or (required and not value):
        need = "a non-empty string" if required else "a string"
        raise ApiError(400, "invalid_field", f"{name} must be {need} of at most {TEXT_CHARS_MAX}")
    return value


def _id(value: object, name: str) -> str:
    if not is_id(value):
        raise ApiError(400, "invalid_id", f"{name} must match [A-Za-z0-9_.-]{{1,64}}")
    return str(value)


async def _charge_now(rt: Runtime, subscription_id: str) -> None:
    """Run what is due for one subscription, and wait (bounded) while its current period's
    charge is in flight at another worker, so the answer shows how the charge went."""
    deadline = asyncio.get_running_loop().time() + CHARGE_WAIT_S_MAX
    while True:
        await renewals_of(rt).run_due(rt.meter.clock.now_ms(), subscription_id=subscription_id)
        async with rt.ledger.database.connection() as conn:
            sub = await store.read(conn, subscription_id)
            if sub is None:
                return
            period = await store.read_period(conn, subscription_id, sub.period_no)
            tried = await store.attempts(conn, subscription_id, sub.period_no)
        waiting = (
            period is not None
            and period.status == "due"
            and (not tried or tried[-1].status == "pending")
            and sub.next_action_at_ms != 0
            and sub.next_action_at_ms <= rt.meter.clock.now_ms()
        )
        if not waiting or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(CHARGE_WAIT_POLL_S)


async def into_open_tab(rt: Runtime, customer: str, currency: str) -> None:
    """A new member with a tab open already gets the allowance into it at once."""
    tab_id = await rt.meter.tabs.find_open(customer, currency)
    if tab_id is None:
        return
    tab = await rt.meter.tabs.read(TabRef(customer, tab_id))
    if tab is not None:
        await reserve_allowances(rt, tab)


async def _into_open_tab_of(rt: Runtime, result: Result) -> None:
    """A membership active again (resumed, or restored by a new card) puts its allowance into
    the member's open tab."""
    if result.subscription is not None:
        await into_open_tab(rt, result.subscription.customer, result.subscription.currency)


async def view_of(rt: Runtime, subscription_id: str) -> dict[str, Any] | None:
    """A subscription as ``GET /v1/subscriptions/{id}`` shows it (and the ``subscription``
    WebSocket message carries it: :mod:`server.subscription_push`), or None."""
    return await service_of(rt).view(subscription_id)


async def _view_or_404(rt: Runtime, subscription_id: str) -> dict[str, Any]:
    found = await view_of(rt, subscription_id)
    if found is None:
        raise ApiError(404, "subscription_not_found", f"no subscription {subscription_id}")
    return found


async def handle_create_plan(request: Request, rt: Runtime) -> Response:
    """Create a plan; the same definition again answers it, another is refused."""
    body = await json_body(request)
    try:
        plan = plan_from_json(body)
    except PlanInvalid as exc:
        raise ApiError(400, "invalid_plan", str(exc)) from None
    service = service_of(rt)
    created = await service.put_plan(plan, rt.meter.clock.now_ms())
    found = await service.plan(plan.plan_id)
    if found is None:  # pragma: no cover - it was just written
        raise ApiError(500, "internal_error", "the plan vanished; retry")
    if not created and found.to_json() != plan.to_json():
        raise ApiError(409, "plan_exists", "a plan of that id exists: plans are never edited")
    return JSONResponse(found.to_json(), status_code=201 if created else 200)


async def handle_read_plan(request: Request, rt: Runtime) -> Response:
    """A plan."""
    found = await service_of(rt).plan(request.path_params["plan_id"])
    if found is None:
        raise ApiError(404, "plan_not_found", "no such plan")
    return JSONResponse(found.to_json())


async def handle_create(request: Request, rt: Runtime) -> Response:
    """Sign a customer up, and run the first charge."""
    key = request.headers.get("idempotency-key", "")
    if not is_id(key):
        raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key header")
    body = await json_body(request)
    customer = _id(field(body, "customer"), "customer")
    currency = field(body, "currency")
    if not is_currency(currency):
        raise ApiError(400, "invalid_currency", "currency must be an accepted ISO-4217 code")
    country = _text(body, "country", required=True).upper()
    if len(country) != 2 or not country.isalpha() or not country.isascii():
        raise ApiError(400, "invalid_field", "country must be an ISO 3166 alpha-2 code")
    language = _text(body, "language", "en")
    if language not in LANGUAGES:
        raise ApiError(400, "invalid_field", f"language must be one of {', '.join(LANGUAGES)}")
    card_expires = _text(body, "card_expires")
    if not valid_card_expires(card_expires):
        raise ApiError(400, "invalid_field", "card_expires must be YYYY-MM")
    quantity, addons = _items(body)
    new = NewSubscription(
        subscription_id=subscription_id_for(customer, key),
        customer=customer,
        plan_id=_id(field(body, "plan_id"), "plan_id"),
        currency=currency,
        payment_method=_text(body, "payment_method", required=True),
        country=country,
        country_evidence=_text(body, "country_evidence", required=True),
        email=_text(body, "email"),
        language=language,
        card_expires=card_expires,
        processor=_text(body, "processor"),
        quantity=quantity,
        addons=addons,
    )
    view, created = await sign_up(rt, new)
    return JSONResponse(view, status_code=201 if created else 200)


async def sign_up(rt: Runtime, new: NewSubscription) -> tuple[dict[str, Any], bool]:
    """Sign a customer up and run the first charge (``POST /v1/subscriptions``, and the demo
    viewer's membership form): the subscription's view, and whether it was created now (False:
    the same sign-up again). Raises the API's refusal otherwise."""
    result = await service_of(rt).create(new, rt.meter.clock.now_ms())
    if result.code not in (SubCode.APPLIED, SubCode.DUPLICATE):
        raise _refused(result.code)
    if result.code is SubCode.APPLIED:
        await _charge_now(rt, new.subscription_id)
    await into_open_tab(rt, new.customer, new.currency)
    return await _view_or_404(rt, new.subscription_id), result.code is SubCode.APPLIED


async def change(rt: Runtime, subscription_id: str, plan_id: str) -> dict[str, Any]:
    """Change the plan (``POST …/change``); the view, or the API's refusal raised."""
    result = await service_of(rt).change_plan(subscription_id, plan_id, rt.meter.clock.now_ms())
    if result.code is not SubCode.APPLIED:
        raise _refused(result.code)
    return await _view_or_404(rt, subscription_id)


async def cancel(rt: Runtime, subscription_id: str, mode_raw: object) -> dict[str, Any]:
    """Cancel (``POST …/cancel``); the view, or the API's refusal raised."""
    try:
        mode = CancelMode(str(mode_raw))
    except ValueError:
        raise ApiError(400, "invalid_field", "mode is now, period_end or notice") from None
    result = await service_of(rt).cancel(subscription_id, mode, rt.meter.clock.now_ms())
    if result.code is not SubCode.APPLIED:
        raise _refused(result.code)
    return await _view_or_404(rt, subscription_id)


async def handle_read(request: Request, rt: Runtime) -> Response:
    """A subscription."""
    return JSONResponse(await _view_or_404(rt, request.path_params["subscription_id"]))


async def handle_change(request: Request, rt: Runtime) -> Response:
    """Change the plan, prorated on the next invoice."""
    body = await json_body(request)
    plan_id = _id(field(body, "plan_id"), "plan_id")
    return JSONResponse(await change(rt, request.path_params["subscription_id"], plan_id))


async def handle_items(request: Request, rt: Runtime) -> Response:
    """Set the quantity and the add-ons, prorated on the next invoice."""
    sid = request.path_params["subscription_id"]
    quantity, addons = _items(await json_body(request))
    result = await service_of(rt).change_items(sid, quantity, addons, rt.meter.clock.now_ms())
    if result.code is not SubCode.APPLIED:
        raise _refused(result.code)
    return JSONResponse(await _view_or_404(rt, sid))


async def handle_cancel(request: Request, rt: Runtime) -> Response:
    """Cancel now, at the period's end, or after notice."""
    body = await json_body(request)
    sid = request.path_params["subscription_id"]
    return JSONResponse(await cancel(rt, sid, field(body, "mode", "period_end")))


async def handle_pause(request: Request, rt: Runtime) -> Response:
    """Pause at the end of the paid period (no charge and no features until resumed)."""
    sid = request.path_params["subscription_id"]
    result = await service_of(rt).pause(sid, rt.meter.clock.now_ms())
    if result.code is not SubCode.APPLIED:
        raise _refused(result.code)
    return JSONResponse(await _view_or_404(rt, sid))


async def handle_resume(request: Request, rt: Runtime) -> Response:
    """Resume: the next period begins now and is charged before the answer."""
    sid = request.path_params["subscription_id"]
    result = await service_of(rt).resume(sid, rt.meter.clock.now_ms())
    if result.code is not SubCode.APPLIED:
        raise _refused(result.code)
    await _charge_now(rt, sid)
    await _into_open_tab_of(rt, result)
    return JSONResponse(await _view_or_404(rt, sid))


async def handle_card(request: Request, rt: Runtime) -> Response:
    """A new card on file; a past-due period is retried with it at once."""
    sid = request.path_params["subscription_id"]
    body = await json_body(request)
    card_expires = _text(body, "card_expires")
    if not valid_card_expires(card_expires):
        raise ApiError(400, "invalid_field", "card_expires must be YYYY-MM")
    now = rt.meter.clock.now_ms()
    result = await service_of(rt).update_card(
        sid, _text(body, "payment_method", required=True), card_expires, now
    )
    if result.code is not SubCode.APPLIED:
        raise _refused(result.code)
    await _charge_now(rt, sid)
    await _into_open_tab_of(rt, result)
    return JSONResponse(await _view_or_404(rt, sid))


async def handle_pay_link(request: Request, rt: Runtime) -> Response:
    """A pay link for the period a past-due subscription owes (its collection case is opened
    once per period); the URL is answered once."""
    sid = request.path_params["subscription_id"]
    body = await json_body(request)
    hours = int(LINK_EXPIRY_H.check(field(body, "expiry_h", LINK_EXPIRY_H_DEFAULT)))
    async with rt.ledger.database.connection() as conn:
        owed = await paylink.owed_period(conn, sid)
        found = owed[0] if owed is not None else await store.read(conn, sid)
    if found is None:
        raise ApiError(404, "subscription_not_found", f"no subscription {sid}")
    if owed is None:
        raise ApiError(409, "nothing_owed", "the subscription is not past due")
    sub, period = owed
    now_ms = rt.meter.clock.now_ms()
    collector = collector_of(rt)
    case_id = await collector.open_membership(
        subscription_id=sid,
        period_no=period.period_no,
        customer=sub.customer,
        currency=sub.currency,
        amount_minor=period.total_minor,
        processor=sub.processor,
        language=sub.language,
        now_ms=now_ms,
    )
    limits = dataclasses.replace(rt.settings.collection_config().link, expiry_s=hours * 3_600)
    token = await collector.create_link(case_id, now_ms, limits)
    return JSONResponse(
        {
            "subscription_id": sid,
            "period_no": period.period_no,
            "case_id": case_id,
            "amount_minor": period.total_minor,
            "currency": sub.currency,
            "url": f"{str(request.base_url).rstrip('/')}/pay/{token}",
            "expires_at_ms": now_ms + limits.expiry_s * 1_000,
        },
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def handle_invoices(request: Request, rt: Runtime) -> Response:
    """A subscription's invoices."""
    sid = request.path_params["subscription_id"]
    await _view_or_404(rt, sid)
    return JSONResponse({"invoices": await service_of(rt).invoices(sid)})


async def handle_of_customer(request: Request, rt: Runtime) -> Response:
    """A customer's subscriptions, newest first."""
    customer = _id(request.path_params["customer"], "customer")
    async with rt.ledger.database.connection() as conn:
        found = await store.of_customer(conn, customer, LIST_MAX_DEFAULT)
        shown = []
        for sub in found:
            plan = await store.read_plan(conn, sub.plan_id)
            if plan is not None:
                shown.append(subscription_json(sub, plan))
    return JSONResponse({"subscriptions": shown})


async def handle_customer_invoices(request: Request, rt: Runtime) -> Response:
    """A customer's invoices and credit notes, newest first (``before_ms`` pages on)."""
    customer = _id(request.query_params.get("customer", ""), "customer")
    before_raw = request.query_params.get("before_ms", "0")
    if not before_raw.isdigit() or len(before_raw) > 15:
        raise ApiError(400, "invalid_field", "before_ms must be a time in ms")
    async with rt.ledger.database.connection() as conn:
        found = await invoices.of_customer(conn, customer, before_ms=int(before_raw))
    return JSONResponse({"invoices": found})


async def handle_read_invoice(request: Request, rt: Runtime) -> Response:
    """One invoice or credit note with its lines."""
    invoice_id = request.path_params["invoice_id"]
    async with rt.ledger.database.connection() as conn:
        found = await invoices.read(conn, invoice_id) if len(invoice_id) <= 64 else None
    if found is None:
        raise ApiError(404, "invoice_not_found", "no such invoice or credit note")
    return JSONResponse(found)


async def handle_run(_request: Request, rt: Runtime) -> Response:
    """Run the due renewals now."""
    report = await renewals_of(rt).run_due(rt.meter.clock.now_ms())
    return JSONResponse(
        {
            "claimed": report.claimed,
            "approved": report.approved,
            "declined": report.declined,
            "unknown": report.unknown,
        }
    )


def _window(since_raw: str, until_raw: str) -> tuple[datetime, datetime]:
    since, until = parse_instant(since_raw), parse_instant(until_raw)
    if until <= since:
        raise ValueError("until must be after since")
    return since, until


async def _export_text(ledger: Ledger, since: datetime, until: datetime, fmt: str) -> str:
    async with ledger.database.connection() as conn:
        found = await export.issued(conn, since, until)
    if fmt == "datev":
        return export.datev_csv(found, since, until)
    return export.plain_csv(found)


async def handle_export(request: Request, rt: Runtime) -> Response:
    """Invoices issued in ``[since, until)`` as CSV: ``format=plain`` (default) or ``datev``."""
    fmt = request.query_params.get("format", "plain")
    if fmt not in ("plain", "datev"):
        raise ApiError(400, "invalid_field", "format is plain or datev")
    try:
        since, until = _window(
            request.query_params.get("since", ""), request.query_params.get("until", "")
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_field", f"since and until (ISO 8601): {exc}") from None
    text = await _export_text(rt.ledger, since, until, fmt)
    name = f"invoices-{fmt}-{since.date().isoformat()}-{until.date().isoformat()}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def export_command(settings: Settings, since_raw: str, until_raw: str, fmt: str) -> int:
    """``tipmeter export``: the CSV on standard output (needs ``TIPMETER_DATABASE_URL``)."""
    import asyncio
    import sys

    try:
        since, until = _window(since_raw, until_raw)
    except ValueError as exc:
        print(f"tipmeter export: {exc}", file=sys.stderr)
        return 2
    if settings.embedded_postgres:
        print("tipmeter export: set TIPMETER_DATABASE_URL", file=sys.stderr)
        return 2

    async def run() -> str:
        ledger = await Ledger.open(settings.database_config())
        try:
            return await _export_text(ledger, since, until, fmt)
        finally:
            await ledger.close()

    sys.stdout.write(asyncio.run(run()))
    return 0


def routes() -> list[Route]:
    """The subscriptions API's routes."""
    sub = "/v1/subscriptions/{subscription_id}"
    return [
        Route("/v1/plans", endpoint("create_plan", handle_create_plan), methods=["POST"]),
        Route("/v1/plans/{plan_id}", endpoint("read_plan", handle_read_plan), methods=["GET"]),
        Route(
            "/v1/subscriptions", endpoint("create_subscription", handle_create), methods=["POST"]
        ),
        Route("/v1/subscriptions/run", endpoint("run_renewals", handle_run), methods=["POST"]),
        Route(sub, endpoint("read_subscription", handle_read), methods=["GET"]),
        Route(f"{sub}/change", endpoint("change_subscription", handle_change), methods=["POST"]),
        Route(
            f"{sub}/items", endpoint("change_subscription_items", handle_items), methods=["POST"]
        ),
        Route(f"{sub}/cancel", endpoint("cancel_subscription", handle_cancel), methods=["POST"]),
        Route(f"{sub}/pause", endpoint("pause_subscription", handle_pause), methods=["POST"]),
        Route(f"{sub}/resume", endpoint("resume_subscription", handle_resume), methods=["POST"]),
        Route(f"{sub}/card", endpoint("update_subscription_card", handle_card), methods=["POST"]),
        Route(
            f"{sub}/pay-link",
            endpoint("subscription_pay_link", handle_pay_link),
            methods=["POST"],
        ),
        Route(
            f"{sub}/invoices",
            endpoint("subscription_invoices", handle_invoices),
            methods=["GET"],
        ),
        Route("/v1/exports/invoices", endpoint("export_invoices", handle_export), methods=["GET"]),
        Route(
            "/v1/invoices",
            endpoint("customer_invoices", handle_customer_invoices),
            methods=["GET"],
        ),
        Route(
            "/v1/invoices/{invoice_id}",
            endpoint("read_invoice", handle_read_invoice),
            methods=["GET"],
        ),
        Route(
            "/v1/customers/{customer}/subscriptions",
            endpoint("customer_subscriptions", handle_of_customer),
            methods=["GET"],
        ),
    ]


def _op(summary: str, ok: str, errors: dict[str, str], **extra: Any) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": ok}, "401": {"description": "No API key."}}
    responses.update({code: {"description": text} for code, text in errors.items()})
    return {"summary": summary, "responses": responses, **extra}


def _path(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def openapi_paths() -> dict[str, Any]:
    """The subscriptions routes as the OpenAPI document describes them."""
    sub = "/v1/subscriptions/{subscription_id}"
    params = _path("subscription_id")
    missing = {"404": "`subscription_not_found`."}
    refused = {**missing, "409": "`not_allowed`, `plan_incompatible`, `charge_in_flight` …"}
    return {
        "/v1/plans": {
            "post": _op(
                "Create a plan (docs/subscriptions.md has the plan model).",
                "The plan (201 when created).",
                {"400": "`invalid_plan`.", "409": "`plan_exists` with another definition."},
            )
        },
        "/v1/plans/{plan_id}": {
            "get": _op(
                "A plan.", "The plan.", {"404": "`plan_not_found`."}, parameters=_path("plan_id")
            )
        },
        "/v1/subscriptions": {
            "post": _op(
                "Sign a customer up (Idempotency-Key names the subscription); the first charge "
                "runs before the answer.",
                "The subscription (201 when created).",
                {
                    "400": "A field is malformed.",
                    "409": "`already_subscribed`.",
                    "422": "`plan_unknown`, `currency_not_sold`, `no_processor`, `items_invalid`.",
                },
            )
        },
        "/v1/subscriptions/run": {
            "post": _op("Run the due renewals now.", "What was claimed and charged.", {})
        },
        sub: {
            "get": _op(
                "A subscription: plan, state, features, periods, history.",
                "The subscription.",
                missing,
                parameters=params,
            )
        },
        f"{sub}/change": {
            "post": _op(
                "Change the plan now, prorated on the next invoice.",
                "The subscription.",
                refused,
                parameters=params,
            )
        },
        f"{sub}/items": {
            "post": _op(
                "Set the quantity a tiered plan counts and the add-ons "
                '({"quantity": N, "addons": [{"addon_id", "quantity"}]}), prorated on the next '
                "invoice.",
                "The subscription.",
                {**refused, "422": "`items_invalid`: the plan does not offer them."},
                parameters=params,
            )
        },
        f"{sub}/cancel": {
            "post": _op(
                "Cancel now, at the period's end, or after notice.",
                "The subscription.",
                refused,
                parameters=params,
            )
        },
        f"{sub}/pause": {
            "post": _op(
                "Pause at the end of the paid period: no charge, no features until resumed.",
                "The subscription (pause_at_ms says when the pause takes effect).",
                refused,
                parameters=params,
            )
        },
        f"{sub}/resume": {
            "post": _op(
                "Resume: the next period begins now and is charged before the answer; later "
                "charges are counted from now (a pause asked for and not taken is dropped).",
                "The subscription.",
                refused,
                parameters=params,
            )
        },
        f"{sub}/card": {
            "post": _op(
                "A new card on file; a past-due period is retried at once.",
                "The subscription.",
                refused,
                parameters=params,
            )
        },
        f"{sub}/pay-link": {
            "post": _op(
                "A pay link for the period a past-due subscription owes (docs/subscriptions.md); "
                "the URL is answered once.",
                "The link (201): `url`, `case_id`, `amount_minor`, `expires_at_ms`.",
                {**missing, "400": "`invalid_field`: expiry_h.", "409": "`nothing_owed`."},
                parameters=params,
            )
        },
        f"{sub}/invoices": {
            "get": _op(
                "The subscription's invoices with lines and tax.",
                "The invoices.",
                missing,
                parameters=params,
            )
        },
        "/v1/exports/invoices": {
            "get": _op(
                "Invoices issued in [since, until) as CSV for accountants: format=plain "
                "(default) or datev (docs/subscriptions.md says which columns).",
                "text/csv",
                {"400": "`invalid_field`: since, until (ISO 8601) or format."},
            )
        },
        "/v1/invoices": {
            "get": _op(
                "A customer's invoices and credit notes (memberships, Post Pay captures, "
                "refunds), newest first, with lines and tax (docs/invoices.md).",
                "The invoices.",
                {"400": "`invalid_id` (customer), `invalid_field` (before_ms)."},
                parameters=[
                    {
                        "name": "customer",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {"name": "before_ms", "in": "query", "schema": {"type": "integer"}},
                ],
            )
        },
        "/v1/invoices/{invoice_id}": {
            "get": _op(
                "One invoice or credit note with its lines.",
                "The invoice.",
                {"404": "`invoice_not_found`."},
                parameters=_path("invoice_id"),
            )
        },
        "/v1/customers/{customer}/subscriptions": {
            "get": _op(
                "A customer's subscriptions, newest first.",
                "The subscriptions.",
                {},
                parameters=_path("customer"),
            )
        },
    }
