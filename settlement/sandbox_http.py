"""The sandbox gateway as a separate HTTP process (``tipmeter sandbox-gateway``), and the
:class:`HttpGateway` client that speaks to it.

Crash tests need a processor that outlives the workers they kill: this process keeps the
sandbox's ledger in memory while workers come and go, and its capture log
(``GET /v1/captures``) is the ground truth of what was charged. The wire format is small JSON:

=============================  ===========================================================
request                        body (JSON) — every POST carries an ``Idempotency-Key`` header
=============================  ===========================================================
``POST /v1/authorize``         ``payment_method``, ``amount_minor``, ``currency``
``POST /v1/increment``         ``auth_ref``, ``amount_minor``
``POST /v1/capture``           ``auth_ref``, ``amount_minor``
``POST /v1/void``              ``auth_ref``
``POST /v1/refund``            ``capture_id``, ``amount_minor``
``GET /v1/lookup?key=K``       — (``{"result": null}`` when K never committed)
``GET /v1/authorizations/R``   — where hold R stands (``{"authorization": null}`` if unknown)
``POST /v1/complete_action``   ``auth_ref``: the customer passed 3-D Secure (tests, pages)
``POST /v1/behaviour``         ``decline_holds`` (a reason or null): this sandbox now behaves
                               as another processor would (tests of routing and cascading)
``GET /v1/captures``           — the capture log, in commit order
``POST /v1/faults``            ``operation``, ``fault``, ``times``: inject faults (tests)
=============================  ===========================================================

Replies: ``200 {"result": {...}}`` (``kind`` is ``hold``, ``capture``, ``void`` or
``refund``); ``503`` when the sandbox's fault says unavailable (the client raises
GatewayUnavailable); ``409`` for a request the sandbox refuses (GatewayRequestError); ``422``
for a malformed body.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final, TypeVar
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from metering.money import is_amount
from settlement import http
from settlement.gateway import (
    Authorization,
    AuthorizationStatus,
    Capabilities,
    CaptureResult,
    DeclineReason,
    GatewayRequestError,
    GatewayUnavailable,
    Hold,
    RefundResult,
    VoidResult,
)
from settlement.sandbox import (
    CaptureLogEntry,
    Fault,
    SandboxGateway,
    decode_result,
    encode_result,
)

#: The ``tipmeter sandbox-gateway`` process's journal, in its data folder.
SANDBOX_HTTP_JOURNAL: Final = "sandbox-gateway.jsonl"

Result = Hold | CaptureResult | VoidResult | RefundResult
R = TypeVar("R", Hold, CaptureResult, VoidResult, RefundResult)

#: Largest request body the sandbox reads.
BODY_BYTES_MAX: Final = 65_536
#: Largest capture log the client reads (a soak captures a few thousand).
CAPTURE_LOG_BYTES_MAX: Final = 64 * 1_048_576


def _json(status: int, payload: Any) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def create_app(gateway: SandboxGateway) -> Starlette:
    """The sandbox's HTTP app, serving ``gateway`` (one ledger for the process's life)."""

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > BODY_BYTES_MAX:
            raise ValueError("body too large")
        data = orjson.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    def amount(data: dict[str, Any]) -> int:
        value = data.get("amount_minor")
        if not is_amount(value):
            raise ValueError("amount_minor must be an integer in minor units")
        return value

    def text(data: dict[str, Any], name: str) -> str:
        value = data.get(name)
        if type(value) is not str:
            raise ValueError(f"{name} must be a string")
        return value

    async def operation(request: Request) -> Response:
        name = request.path_params["operation"]
        key = request.headers.get("idempotency-key", "")
        if not key:
            return _json(422, {"error": "the Idempotency-Key header is required"})
        try:
            data = await body_of(request)
            if name == "authorize":
                result: Result = await gateway.authorize(
                    idempotency_key=key,
                    payment_method=text(data, "payment_method"),
                    amount_minor=amount(data),
                    currency=text(data, "currency"),
                )
            elif name == "increment":
                result = await gateway.increment(
                    idempotency_key=key, auth_ref=text(data, "auth_ref"), amount_minor=amount(data)
                )
            elif name == "capture":
                result = await gateway.capture(
                    idempotency_key=key, auth_ref=text(data, "auth_ref"), amount_minor=amount(data)
                )
            elif name == "void":
                result = await gateway.void(idempotency_key=key, auth_ref=text(data, "auth_ref"))
            elif name == "refund":
                result = await gateway.refund(
                    idempotency_key=key,
                    capture_id=text(data, "capture_id"),
                    amount_minor=amount(data),
                )
            else:
                return _json(404, {"error": f"no operation {name!r}"})
        except GatewayUnavailable as exc:
            return _json(503, {"error": str(exc)})
        except GatewayRequestError as exc:
            return _json(409, {"error": str(exc)})
        except ValueError as exc:
            return _json(422, {"error": str(exc)})
        return _json(200, {"result": encode_result(result)})

    async def lookup(request: Request) -> Response:
        found = await gateway.lookup(request.query_params.get("key", ""))
        return _json(200, {"result": encode_result(found)})

    async def authorization(request: Request) -> Response:
        found = await gateway.lookup_authorization(request.path_params["auth_ref"])
        return _json(200, {"authorization": asdict(found) if found is not None else None})

    async def complete_action(request: Request) -> Response:
        try:
            done = gateway.complete_action(text(await body_of(request), "auth_ref"))
        except ValueError as exc:
            return _json(422, {"error": str(exc)})
        return _json(200 if done else 404, {"ok": done})

    async def behaviour(request: Request) -> Response:
        try:
            raw = (await body_of(request)).get("decline_holds")
            gateway.decline_holds = DeclineReason(raw) if raw is not None else None
        except ValueError as exc:
            return _json(422, {"error": str(exc)})
        return _json(200, {"ok": True})

    async def captures(request: Request) -> Response:
        return _json(200, {"captures": [asdict(entry) for entry in gateway.captures]})

    async def faults(request: Request) -> Response:
        try:
            data = await body_of(request)
            times = data.get("times", 1)
            if type(times) is not int or not 1 <= times <= 1_000:
                raise ValueError("times must be an integer in 1..1000")
            gateway.inject(text(data, "operation"), Fault(text(data, "fault")), times)
        except ValueError as exc:
            return _json(422, {"error": str(exc)})
        return _json(200, {"ok": True})

    return Starlette(
        routes=[
            Route("/v1/lookup", lookup, methods=["GET"]),
            Route("/v1/captures", captures, methods=["GET"]),
            Route("/v1/faults", faults, methods=["POST"]),
            Route("/v1/complete_action", complete_action, methods=["POST"]),
            Route("/v1/behaviour", behaviour, methods=["POST"]),
            Route("/v1/authorizations/{auth_ref}", authorization, methods=["GET"]),
            Route("/v1/{operation}", operation, methods=["POST"]),
        ]
    )


class HttpGateway:
    """A :class:`settlement.gateway.Gateway` that calls a ``tipmeter sandbox-gateway`` process.

    No reply within ``timeout_s``, a 5xx or a broken connection raise GatewayUnavailable (the
    call may have committed: retry with the same key); a 4xx raises GatewayRequestError.
    """

    def __init__(
        self, base_url: str, *, timeout_s: float = 10.0, capabilities: Capabilities | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        #: As the process was started (the sandbox process cannot be asked).
        self.capabilities = (
            capabilities if capabilities is not None else Capabilities(customer_action=True)
        )

    async def _send(
        self, method: str, path: str, body: dict[str, Any] | None = None, key: str = ""
    ) -> Any:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        try:
            reply = await http.request(
                method,
                self.base_url + path,
                body=orjson.dumps(body) if body is not None else b"",
                headers=headers,
                timeout_s=self.timeout_s,
                reply_bytes_max=CAPTURE_LOG_BYTES_MAX,
            )
        except http.HttpFailure as exc:
            raise GatewayUnavailable(str(exc)) from exc
        if reply.status >= 500:
            raise GatewayUnavailable(f"sandbox answered {reply.status}: {reply.body[:200]!r}")
        if reply.status != 200:
            raise GatewayRequestError(f"sandbox answered {reply.status}: {reply.body[:200]!r}")
        return orjson.loads(reply.body)

    async def _operation(self, name: str, key: str, body: dict[str, Any]) -> Result:
        result = decode_result((await self._send("POST", f"/v1/{name}", body, key))["result"])
        if result is None:
            raise GatewayRequestError(f"{name} answered no result")
        return result

    async def authorize(
        self, *, idempotency_key: str, payment_method: str, amount_minor: int, currency: str
    ) -> Hold:
        """Place a hold (see :meth:`settlement.gateway.Gateway.authorize`)."""
        body = {
            "payment_method": payment_method,
            "amount_minor": amount_minor,
            "currency": currency,
        }
        return _expect(Hold, await self._operation("authorize", idempotency_key, body))

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Raise a hold to a new total."""
        body = {"auth_ref": auth_ref, "amount_minor": amount_minor}
        return _expect(Hold, await self._operation("increment", idempotency_key, body))

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Capture once, release the rest."""
        body = {"auth_ref": auth_ref, "amount_minor": amount_minor}
        return _expect(CaptureResult, await self._operation("capture", idempotency_key, body))

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """Release a hold."""
        return _expect(
            VoidResult, await self._operation("void", idempotency_key, {"auth_ref": auth_ref})
        )

    async def refund(
        self, *, idempotency_key: str, capture_id: str, amount_minor: int
    ) -> RefundResult:
        """Refund part or all of a capture."""
        body = {"capture_id": capture_id, "amount_minor": amount_minor}
        return _expect(RefundResult, await self._operation("refund", idempotency_key, body))

    async def lookup(self, idempotency_key: str) -> Result | None:
        """The result recorded for ``idempotency_key``, if a call with it committed."""
        reply = await self._send("GET", f"/v1/lookup?key={quote(idempotency_key, safe='')}")
        return decode_result(reply["result"])

    async def lookup_authorization(self, auth_ref: str) -> Authorization | None:
        """Where hold ``auth_ref`` stands now."""
        reply = await self._send("GET", f"/v1/authorizations/{quote(auth_ref, safe='')}")
        data = reply["authorization"]
        if data is None:
            return None
        try:
            return Authorization(**{**data, "status": AuthorizationStatus(data["status"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise GatewayRequestError(f"malformed authorization: {exc}") from exc

    async def capture_log(self) -> list[dict[str, Any]]:
        """The sandbox's capture log (ground truth in crash tests), in commit order."""
        captures: list[dict[str, Any]] = (await self._send("GET", "/v1/captures"))["captures"]
        return captures

    async def listed_captures(self) -> list[CaptureLogEntry]:
        """Every capture the sandbox committed, in commit order (for reconciliation)."""
        return [CaptureLogEntry(**entry) for entry in await self.capture_log()]

    async def behave(self, *, decline_holds: DeclineReason | None) -> None:
        """Make the sandbox decline every hold with ``decline_holds`` (None: test cards)."""
        await self._send("POST", "/v1/behaviour", {"decline_holds": decline_holds})

    async def inject(self, operation: str, fault: Fault, times: int = 1) -> None:
        """Make the sandbox's next ``times`` calls of ``operation`` fail with ``fault``."""
        await self._send(
            "POST", "/v1/faults", {"operation": operation, "fault": fault, "times": times}
        )


def _expect(kind: type[R], result: Result) -> R:
    if not isinstance(result, kind):
        raise GatewayRequestError(f"expected a {kind.__name__}, got {type(result).__name__}")
    return result
