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
"""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

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
class EmulatorState:
    """The emulator's memory."""

    eticket_id: str
    allowed_hosts: frozenset[str]
    authorizations: dict[str, _Authorization] = field(default_factory=dict)
    replies: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)


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
        if reference and reference in state.replies:
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

    return Starlette(
        routes=[
            Route("/emulator/requests", requests, methods=["GET"]),
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


def _status(state: EmulatorState, form: dict[str, str]) -> str:
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
    args = parser.parse_args()
    state = EmulatorState(args.eticketid, frozenset(args.allow.split(",")))
    uvicorn.run(create_app(state), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
