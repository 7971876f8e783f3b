"""A Stripe adapter of the gateway protocol: PaymentIntents with manual capture.

Mapping (every call through the official ``stripe`` SDK, with the caller's idempotency key on
every request, so Stripe replays the first answer to any retry):

==================  ==========================================================================
protocol            Stripe
==================  ==========================================================================
``authorize``       create a PaymentIntent: ``capture_method=manual``, ``confirm=true``,
                    ``payment_method_options[card][request_incremental_authorization]=
                    if_available``; the hold expires at the charge's ``capture_before``
``increment``       ``POST /v1/payment_intents/{id}/increment_authorization`` (``amount`` is
                    the new total)
``capture``         ``POST /v1/payment_intents/{id}/capture`` with ``amount_to_capture``; the
                    rest of the hold is released. The key is written into the intent's
                    metadata so that :meth:`StripeGateway.lookup` can find it
``void``            ``POST /v1/payment_intents/{id}/cancel``
``refund``          ``POST /v1/refunds`` with ``payment_intent`` and ``amount``
``lookup``          search PaymentIntents by the capture key in their metadata
==================  ==========================================================================

The auth reference and the capture id are both the PaymentIntent id (one intent, one capture).
A card decline (``card_error``) is a business outcome with its ``decline_code``; connection
errors, rate limits and 5xx are :class:`~settlement.gateway.GatewayUnavailable`; other API
errors are :class:`~settlement.gateway.GatewayRequestError`.

Stripe offers no lookup by idempotency key, hence the metadata; its search index lags by up to
a minute, which is why the worker only looks up captures past the capture guard (a minute or
more after any attempt). HTTP goes through :class:`SettlementHttpClient`, a ``stripe``
HTTP client on :mod:`settlement.http`, so no second HTTP stack is needed at run time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import stripe

from settlement import http
from settlement.gateway import (
    CaptureResult,
    DeclineReason,
    GatewayRequestError,
    GatewayUnavailable,
    Hold,
    Outcome,
    RefundResult,
    VoidResult,
)

#: The metadata key that records a capture's idempotency key on its PaymentIntent.
CAPTURE_KEY_METADATA: Final = "tipmeter_capture_key"

_DECLINE_CODES: Final[Mapping[str, DeclineReason]] = {
    "insufficient_funds": DeclineReason.INSUFFICIENT_FUNDS,
    "expired_card": DeclineReason.EXPIRED_CARD,
    "lost_card": DeclineReason.LOST_CARD,
    "stolen_card": DeclineReason.STOLEN_CARD,
    "invalid_account": DeclineReason.INVALID_CARD,
    "invalid_number": DeclineReason.INVALID_CARD,
    "incorrect_number": DeclineReason.INVALID_CARD,
    "card_not_supported": DeclineReason.CARD_NOT_ACTIVE,
    "card_velocity_exceeded": DeclineReason.DO_NOT_HONOR,
    "do_not_honor": DeclineReason.DO_NOT_HONOR,
    "generic_decline": DeclineReason.DO_NOT_HONOR,
}


def decline_reason(code: str | None) -> DeclineReason:
    """Map a Stripe ``decline_code`` to ours (unknown codes count as ``do_not_honor``)."""
    return _DECLINE_CODES.get(code or "", DeclineReason.DO_NOT_HONOR)


class SettlementHttpClient(stripe.HTTPClient):
    """The ``stripe`` SDK's HTTP client interface, on :mod:`settlement.http` (async only)."""

    name = "tipmeter"

    def __init__(self, timeout_s: float = 20.0) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        """Send one request; connection failures become the SDK's APIConnectionError."""
        body = post_data.encode() if isinstance(post_data, str) else (post_data or b"")
        try:
            reply = await http.request(
                method.upper(), url, body=body, headers=headers, timeout_s=self.timeout_s
            )
        except http.HttpFailure as exc:
            # The SDK ships no annotations for this constructor.
            raise stripe.APIConnectionError(  # type: ignore[no-untyped-call]
                str(exc), should_retry=False
            ) from exc
        return reply.body, reply.status, reply.headers

    async def sleep_async(self, secs: float) -> None:
        """The SDK's retry pause (its retries are off: the worker retries with the same key)."""
        await asyncio.sleep(secs)

    async def close_async(self) -> None:
        """Nothing to close: one connection per request."""


class StripeGateway:
    """:class:`settlement.gateway.Gateway` over Stripe PaymentIntents (manual capture)."""

    def __init__(
        self,
        api_key: str,
        *,
        timeout_s: float = 20.0,
        http_client: stripe.HTTPClient | None = None,
        base_url: str | None = None,
    ) -> None:
        client = http_client if http_client is not None else SettlementHttpClient(timeout_s)
        addresses: Any = {"api": base_url} if base_url else None
        self.client = stripe.StripeClient(
            api_key, http_client=client, max_network_retries=0, base_addresses=addresses
        )

    async def authorize(
        self, *, idempotency_key: str, payment_method: str, amount_minor: int, currency: str
    ) -> Hold:
        """Create and confirm a manual-capture PaymentIntent: the hold."""
        try:
            intent = await self.client.v1.payment_intents.create_async(
                {
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "payment_method": payment_method,
                    "confirm": True,
                    "capture_method": "manual",
                    "payment_method_options": {
                        "card": {"request_incremental_authorization": "if_available"}
                    },
                    "expand": ["latest_charge"],
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return Hold(Outcome.DECLINED, currency=currency, decline_reason=_decline_of(exc))
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return _hold(intent, currency)

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Raise the hold to ``amount_minor`` in total (incremental authorization)."""
        try:
            intent = await self.client.v1.payment_intents.increment_authorization_async(
                auth_ref,
                {"amount": amount_minor, "expand": ["latest_charge"]},
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return Hold(Outcome.DECLINED, auth_ref=auth_ref, decline_reason=_decline_of(exc))
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return _hold(intent, intent.currency.upper())

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Capture ``amount_minor``; Stripe releases the rest of the hold."""
        try:
            intent = await self.client.v1.payment_intents.capture_async(
                auth_ref,
                {
                    "amount_to_capture": amount_minor,
                    "metadata": {CAPTURE_KEY_METADATA: idempotency_key},
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return CaptureResult(Outcome.DECLINED, decline_reason=_decline_of(exc))
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return _capture(intent)

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """Cancel the PaymentIntent: the hold is released, nothing captured."""
        try:
            intent = await self.client.v1.payment_intents.cancel_async(
                auth_ref, {"cancellation_reason": "abandoned"}, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return VoidResult(auth_ref=intent.id, released_minor=intent.amount)

    async def refund(
        self, *, idempotency_key: str, capture_id: str, amount_minor: int
    ) -> RefundResult:
        """Refund part of a capture (Stripe refuses refunds beyond it)."""
        try:
            refund = await self.client.v1.refunds.create_async(
                {"payment_intent": capture_id, "amount": amount_minor, "expand": ["charge"]},
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        charge: Any = refund.charge
        total = (
            int(charge.amount_refunded)
            if charge is not None and not isinstance(charge, str)
            else amount_minor
        )
        return RefundResult(refund.id, capture_id, refund.amount, total)

    async def lookup(
        self, idempotency_key: str
    ) -> Hold | CaptureResult | VoidResult | RefundResult | None:
        """The capture made with ``idempotency_key``, found through the intent's metadata.

        Only captures can be looked up (Stripe has no lookup by idempotency key; the other
        calls are never looked up by the worker).
        """
        try:
            found = await self.client.v1.payment_intents.search_async(
                {"query": f"metadata['{CAPTURE_KEY_METADATA}']:'{idempotency_key}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        for intent in found.data:
            if intent.status == "succeeded":
                return _capture(intent)
        return None


def _decline_of(exc: stripe.CardError) -> DeclineReason:
    error: Any = exc.error
    code = getattr(error, "decline_code", None) if error is not None else None
    return decline_reason(code or exc.code)


def _translate(exc: stripe.StripeError) -> Exception:
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return GatewayUnavailable(f"stripe: {exc}")
    if exc.http_status is not None and exc.http_status >= 500:
        return GatewayUnavailable(f"stripe: {exc}")
    if exc.http_status == 409:
        # 409 Conflict: a request with the same key is still in flight (another worker):
        # retry later with the same key. (A key reused with other parameters is a 400
        # idempotency_error: a request error, as the protocol says.)
        return GatewayUnavailable(f"stripe: {exc}")
    return GatewayRequestError(f"stripe: {exc}")


def _hold(intent: Any, currency: str) -> Hold:
    if intent.status != "requires_capture":
        return Hold(
            Outcome.DECLINED,
            intent.id,
            currency=currency,
            decline_reason=DeclineReason.DO_NOT_HONOR,
        )
    charge = intent.latest_charge
    expires_ms = 0
    if charge is not None and not isinstance(charge, str):
        expires_ms = int(charge.payment_method_details.card.capture_before) * 1_000
    return Hold(
        Outcome.APPROVED,
        auth_ref=intent.id,
        amount_minor=int(intent.amount_capturable),
        currency=currency,
        expires_at_ms=expires_ms,
    )


def _capture(intent: Any) -> CaptureResult:
    received = int(intent.amount_received)
    return CaptureResult(
        Outcome.APPROVED,
        capture_id=intent.id,
        amount_minor=received,
        released_minor=max(int(intent.amount) - received, 0),
    )
