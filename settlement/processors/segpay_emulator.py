"""A local process that speaks Segpay Post Pay as :class:`~settlement.processors.segpay.
SegpayWire` describes it — for tests, never a stand-in for Segpay's behaviour beyond that.

``python -m settlement.processors.segpay_emulator --port 8200 --eticketid 109595:13925``

It keeps authorizations in memory, refuses clients outside ``--allow`` (Segpay whitelists
server IPs: 403), refuses an unknown ``eticketid`` (400), decides by stored purchase id — a
``purchaseid`` of the form ``<digits>x<code>`` is declined with decline code ``<code>``
(``1001x05``: do not honor), any other approves — and replays the first reply to a repeated
``merchantreference`` (the idempotency this adapter hopes Segpay offers). A capture finalizes
the authorization: a second one with another reference is declined (``already_captured``).
``GET /emulator/requests`` lists what it received, in order (tests check where calls went).

The hosted payment page (``GET`` :attr:`SegpayWire.HOSTED_PATH` with the price point, amount,
reference and return links) shows a form for the purchase id; posting it decides like an
authorization (``<digits>x<code>`` declines), captures at once when approved, posts a postback
to ``--postback`` (when given), and sends the customer to the approved or declined link. A
reference paid once is never charged again. The status request answers by
``merchantreference`` too.
"""

from __future__ import annotations

import argparse
import hashlib
import html
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl, urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from settlement import http
from settlement.processors.segpay import SegpayWire, dollars, minor_of

#: Largest request body read.
BODY_BYTES_MAX: Final = 16_384
#: Requests remembered for ``/emulator/requests``.
REQUEST_LOG_MAX: Final = 10_000


@dataclass
class _Authorization:
    purchase_id: str
    amount_minor: int
    captured_minor: int = 0
    captured: bool = False


@dataclass
class _HostedPayment:
    transaction: str
    amount_minor: int
    approved: bool
    decline_code: str = ""


@dataclass
class EmulatorState:
    """The emulator's memory."""

    eticket_id: str
    allowed_hosts: frozenset[str]
    authorizations: dict[str, _Authorization] = field(default_factory=dict)
    replies: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    #: Hosted page payments by our reference.
    hosted: dict[str, _HostedPayment] = field(default_factory=dict)
    #: Where postbacks go (None: none are sent).
    postback_url: str | None = None


def _reply(**fields: str) -> str:
    return "\n".join(f"{k}={v}" for k, v in fields.items())


def create_app(state: EmulatorState) -> Starlette:
    """The emulator's app over ``state``."""

    async def handle(request: Request) -> Response:
        host = request.client.host if request.client is not None else ""
        if host not in state.allowed_hosts:
            return PlainTextResponse("not whitelisted", status_code=403)
        raw = await request.body()
        if len(raw) > BODY_BYTES_MAX:
            return PlainTextResponse("body too large", status_code=413)
        form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        path = request.url.path
        if len(state.requests) < REQUEST_LOG_MAX:
            state.requests.append({"path": path, **form})
        reference = form.get(SegpayWire.REFERENCE_FIELD, "")
        params = (path, *sorted(f"{k}={v}" for k, v in form.items()))
        if reference and path != SegpayWire.STATUS_PATH and reference in state.replies:
            first_params, first_reply = state.replies[reference]
            if first_params != params:
                return PlainTextResponse("reference reused", status_code=400)
            return PlainTextResponse(first_reply)
        try:
            if path == SegpayWire.AUTH_PATH:
                body = _authorize(state, form, reference)
            elif path == SegpayWire.CAPTURE_PATH:
                body = _capture(state, form)
            elif path == SegpayWire.STATUS_PATH:
                return PlainTextResponse(_status(state, form))
            else:
                return PlainTextResponse("no such request", status_code=404)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if reference:
            state.replies[reference] = (params, body)
        return PlainTextResponse(body)

    async def requests(request: Request) -> Response:
        return JSONResponse({"requests": state.requests})

    async def hosted_page(request: Request) -> Response:
        query = dict(request.query_params)
        if request.method == "POST":
            raw = await request.body()
            if len(raw) > BODY_BYTES_MAX:
                return PlainTextResponse("body too large", status_code=413)
            query.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        if query.get(SegpayWire.HOSTED_ETICKET_FIELD) != state.eticket_id:
            return PlainTextResponse("unknown eticketid", status_code=400)
        reference = query.get(SegpayWire.REFERENCE_FIELD, "")
        try:
            amount = minor_of(query.get(SegpayWire.HOSTED_AMOUNT_FIELD, ""))
        except ValueError:
            return PlainTextResponse("bad amount", status_code=400)
        if not reference:
            return PlainTextResponse("merchantreference is required", status_code=400)
        if request.method == "GET":
            return HTMLResponse(_hosted_form(query))
        purchase = query.get("purchaseid", "")
        if len(state.requests) < REQUEST_LOG_MAX:
            state.requests.append({"path": SegpayWire.HOSTED_PATH, **query})
        paid = state.hosted.get(reference)
        if paid is None or not paid.approved:
            # A reference paid once is never charged again; a declined one may try again.
            transaction = "sh" + hashlib.sha256(f"{reference}:{purchase}".encode()).hexdigest()[:16]
            code = purchase.rsplit("x", 1)[1] if "x" in purchase else ""
            paid = _HostedPayment(transaction, amount, approved=not code, decline_code=code)
            state.hosted[reference] = paid
            await _postback(state, reference, paid)
        link = (
            SegpayWire.HOSTED_APPROVED_LINK_FIELD
            if paid.approved
            else SegpayWire.HOSTED_DECLINED_LINK_FIELD
        )
        back = query.get(link, "")
        joiner = "&" if "?" in back else "?"
        return RedirectResponse(
            f"{back}{joiner}{urlencode({'transactionid': paid.transaction})}", status_code=303
        )

    return Starlette(
        routes=[
            Route("/emulator/requests", requests, methods=["GET"]),
            Route(SegpayWire.HOSTED_PATH, hosted_page, methods=["GET", "POST"]),
            Route("/{path:path}", handle, methods=["POST"]),
        ]
    )


def _authorize(state: EmulatorState, form: dict[str, str], reference: str) -> str:
    for name in SegpayWire.AUTH_FIELDS:
        if not form.get(name):
            raise ValueError(f"{name} is required")
    if form["eticketid"] != state.eticket_id:
        raise ValueError("unknown eticketid")
    amount = minor_of(form["amount"])
    transaction = "sp" + hashlib.sha256(reference.encode() or b"-").hexdigest()[:16]
    purchase = form["purchaseid"]
    if "x" in purchase:
        code = purchase.rsplit("x", 1)[1]
        return _reply(result=SegpayWire.DECLINED, transactionid=transaction, declinecode=code)
    state.authorizations[transaction] = _Authorization(purchase, amount)
    return _reply(result=SegpayWire.APPROVED, transactionid=transaction, amount=dollars(amount))


def _capture(state: EmulatorState, form: dict[str, str]) -> str:
    transaction = form.get(SegpayWire.AUTH_REF_FIELD, "")
    auth = state.authorizations.get(transaction)
    if auth is None:
        raise ValueError("unknown transaction")
    amount = minor_of(form.get("amount", ""))
    if auth.captured:
        return _reply(
            result=SegpayWire.DECLINED, transactionid=transaction, declinecode="already_captured"
        )
    if not 0 < amount <= auth.amount_minor:
        raise ValueError("amount above the authorization")
    auth.captured = True
    auth.captured_minor = amount
    return _reply(result=SegpayWire.APPROVED, transactionid=transaction, amount=dollars(amount))


def _hosted_form(query: dict[str, str]) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in query.items()
    )
    return (
        "<!doctype html><title>Segpay (emulator)</title><h1>Segpay payment (emulator)</h1>"
        f'<form method="post"><label>Purchase id <input id="purchaseid" name="purchaseid">'
        f'</label>{hidden}<button id="pay">Pay {html.escape(query.get("amount", ""))}</button>'
        "</form>"
    )


async def _postback(state: EmulatorState, reference: str, paid: _HostedPayment) -> None:
    """Tell the merchant's server, as Segpay's postbacks do (a lost one is the status
    request's job)."""
    if state.postback_url is None:
        return
    fields = {
        SegpayWire.RESULT_FIELD: SegpayWire.APPROVED if paid.approved else SegpayWire.DECLINED,
        SegpayWire.TRANSACTION_FIELD: paid.transaction,
        SegpayWire.AMOUNT_FIELD: dollars(paid.amount_minor),
        SegpayWire.CODE_FIELD: paid.decline_code,
        SegpayWire.REFERENCE_FIELD: reference,
    }
    try:
        await http.request(
            "POST",
            state.postback_url,
            body=urlencode(fields).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout_s=5.0,
        )
    except http.HttpFailure:
        return


def _status(state: EmulatorState, form: dict[str, str]) -> str:
    reference = form.get(SegpayWire.REFERENCE_FIELD, "")
    if reference and not form.get(SegpayWire.AUTH_REF_FIELD):
        paid = state.hosted.get(reference)
        if paid is None:
            return _reply(status="unknown")
        if not paid.approved:
            return _reply(
                status="declined", transactionid=paid.transaction, declinecode=paid.decline_code
            )
        return _reply(
            status="captured",
            transactionid=paid.transaction,
            amount=dollars(paid.amount_minor),
            capturedamount=dollars(paid.amount_minor),
        )
    transaction = form.get(SegpayWire.AUTH_REF_FIELD, "")
    auth = state.authorizations.get(transaction)
    if auth is None:
        return _reply(status="unknown")
    return _reply(
        status="captured" if auth.captured else "authorized",
        amount=dollars(auth.amount_minor),
        capturedamount=dollars(auth.captured_minor),
    )


def main() -> None:
    """Serve the emulator until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--eticketid", required=True)
    parser.add_argument("--allow", default="127.0.0.1", help="whitelisted client IPs, comma-sep")
    parser.add_argument("--postback", default=None, help="where to post postbacks")
    args = parser.parse_args()
    state = EmulatorState(
        args.eticketid, frozenset(args.allow.split(",")), postback_url=args.postback
    )
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
