"""A Stripe adapter of the gateway protocol: PaymentIntents with manual capture.

Mapping (every call through the official ``stripe`` SDK, with the caller's idempotency key on
every request, so Stripe replays the first answer to any retry):

==========================  ==================================================================
protocol                    Stripe
==========================  ==================================================================
``authorize``               create a PaymentIntent: ``capture_method=manual``,
                            ``confirm=true``, ``automatic_payment_methods[allow_redirects]=
                            never`` (so no ``return_url`` is asked for),
                            ``payment_method_options[card]
                            [request_incremental_authorization]=if_available``; the hold
                            expires at the charge's ``capture_before``
``increment``               ``POST /v1/payment_intents/{id}/increment_authorization``
                            (``amount`` is the new total)
``capture``                 ``POST /v1/payment_intents/{id}/capture`` with
                            ``amount_to_capture``; the rest of the hold is released
``void``                    ``POST /v1/payment_intents/{id}/cancel``
``refund``                  ``POST /v1/refunds`` with ``payment_intent`` and ``amount``
``lookup_authorization``    ``GET /v1/payment_intents/{id}`` (read-after-write)
``lookup``                  search PaymentIntents by the key in their metadata (lags up to a
                            minute: reconciliation uses ``lookup_authorization``)
``start_hosted``            create a Checkout Session (``mode=payment``, one line of the
                            amount, captured at once, ``success_url``/``cancel_url`` the pay
                            link's return page): the customer goes to ``session.url``
``hosted_result``           ``GET /v1/checkout/sessions/{id}`` (with its PaymentIntent):
                            ``payment_status=paid`` is paid; ``status=expired`` expired
==========================  ==================================================================

What real traffic brings, and how each case is met:

- **3-D Secure.** An intent in ``requires_action`` is :attr:`Outcome.ACTION_REQUIRED` with the
  ``client_secret`` and the redirect URL the page needs; it is left open for the customer. The
  repeated request (same key) gets Stripe's saved answer, so the adapter retrieves the intent
  to see whether the customer completed it. Any other unexpected status is a decline, and the
  intent is cancelled so that nothing stays open.
- **Declines** keep the intent id (``auth_ref``, ``processor_ref``) and Stripe's raw
  ``decline_code``; codes map to reasons whose retry rules come from
  :mod:`settlement.retry_rules`; a code the table does not know is ``unrecognized`` (never
  retried).
- **A malformed reply** (a field missing) never escapes the gateway error tree: the adapter
  retrieves the intent by its id and reads that; if that fails too, the call is
  GatewayUnavailable (retried later, never dead-lettered after a committed capture). A charge
  without ``capture_before`` expires :data:`HOLD_TTL_MS_DEFAULT` after its creation (Stripe's
  documented 7 days for online card payments), never at 0.
- **A 5xx** may have committed, and Stripe replays a saved 5xx to the same key (and forgets keys
  after 24 h). A capture or a void answered 5xx — or "unexpected state", a key forgotten and the
  intent already captured — is reconciled by retrieving the intent: captured is captured;
  still capturable is sent once more under a key derived from the first
  (:data:`RECONCILE_SUFFIX`), harmless because an intent captures at most once. An
  authorization answered 5xx is looked for by its key in the intents' metadata.
- **401/403** (a revoked key) is :class:`GatewayCredentialsRejected`: settlements wait, none is
  dead-lettered. ``Stripe-Should-Retry: true`` makes a 4xx retryable; ``false`` makes it final.
- **A partial authorization** (``amount_capturable`` below the amount asked) is the hold's
  amount: the cap is what was authorized.
- **The base URL** is a setting (``…_URL``), for emulators and tests.

HTTP goes through :class:`SettlementHttpClient`, a ``stripe`` HTTP client on
:mod:`settlement.http`, so no second HTTP stack is needed at run time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import stripe

from metering.clock import Clock, SystemClock
from settlement import http
from settlement.gateway import (
    Authorization,
    AuthorizationStatus,
    Capabilities,
    CaptureResult,
    CustomerAction,
    DeclineReason,
    GatewayCredentialsRejected,
    GatewayRequestError,
    GatewayUnavailable,
    Hold,
    Outcome,
    RefundResult,
    VoidResult,
)
from settlement.processors.hosted import HostedPage, HostedResult, HostedStart, HostedStatus

log = logging.getLogger("tipmeter.processors.stripe")

#: The metadata keys that record the authorization's and the capture's idempotency keys.
AUTH_KEY_METADATA: Final = "tipmeter_auth_key"
CAPTURE_KEY_METADATA: Final = "tipmeter_capture_key"
#: Appended to a capture's or a void's key for the one resend after reconciling a 5xx.
RECONCILE_SUFFIX: Final = "#reconciled"
#: The metadata key that records a hosted payment's (Checkout Session's) idempotency key.
HOSTED_KEY_METADATA: Final = "tipmeter_hosted_key"
#: How long a Checkout Session stays payable (Stripe allows 30 minutes to 24 hours).
CHECKOUT_TTL_S_DEFAULT: Final = 3_600
#: Stripe's documented authorization validity for online card payments, when a charge does not
#: say (``capture_before`` missing).
HOLD_TTL_MS_DEFAULT: Final = 7 * 24 * 3_600_000

T = TypeVar("T")

#: Stripe ``decline_code`` → our reason. The retry rules live in settlement.retry_rules.
DECLINE_CODES: Final[Mapping[str, DeclineReason]] = {
    "insufficient_funds": DeclineReason.INSUFFICIENT_FUNDS,
    "card_velocity_exceeded": DeclineReason.INSUFFICIENT_FUNDS,
    "withdrawal_count_limit_exceeded": DeclineReason.INSUFFICIENT_FUNDS,
    "expired_card": DeclineReason.EXPIRED_CARD,
    "lost_card": DeclineReason.LOST_CARD,
    "stolen_card": DeclineReason.STOLEN_CARD,
    "pickup_card": DeclineReason.PICKUP_CARD,
    "fraudulent": DeclineReason.FRAUDULENT,
    "merchant_blacklist": DeclineReason.DO_NOT_TRY_AGAIN,
    "do_not_try_again": DeclineReason.DO_NOT_TRY_AGAIN,
    "revocation_of_authorization": DeclineReason.REVOCATION_OF_AUTHORIZATION,
    "revocation_of_all_authorizations": DeclineReason.REVOCATION_OF_AUTHORIZATION,
    "stop_payment_order": DeclineReason.STOP_PAYMENT_ORDER,
    "restricted_card": DeclineReason.RESTRICTED_CARD,
    "not_permitted": DeclineReason.RESTRICTED_CARD,
    "transaction_not_allowed": DeclineReason.RESTRICTED_CARD,
    "security_violation": DeclineReason.SECURITY_VIOLATION,
    "invalid_account": DeclineReason.INVALID_CARD,
    "invalid_number": DeclineReason.INVALID_CARD,
    "incorrect_number": DeclineReason.INVALID_CARD,
    "new_account_information_available": DeclineReason.EXPIRED_CARD,
    "card_not_supported": DeclineReason.CARD_NOT_SUPPORTED,
    "currency_not_supported": DeclineReason.CARD_NOT_SUPPORTED,
    "do_not_honor": DeclineReason.DO_NOT_HONOR,
    "generic_decline": DeclineReason.DO_NOT_HONOR,
    "call_issuer": DeclineReason.DO_NOT_HONOR,
    "no_action_taken": DeclineReason.DO_NOT_HONOR,
    "processing_error": DeclineReason.PROCESSING_ERROR,
    "issuer_not_available": DeclineReason.TRY_AGAIN_LATER,
    "reenter_transaction": DeclineReason.TRY_AGAIN_LATER,
    "try_again_later": DeclineReason.TRY_AGAIN_LATER,
    "authentication_required": DeclineReason.AUTHENTICATION_REQUIRED,
    "payment_intent_authentication_failure": DeclineReason.AUTHENTICATION_REQUIRED,
}


def decline_reason(code: str | None) -> DeclineReason:
    """Map a Stripe ``decline_code`` to ours (unknown codes are ``unrecognized``: never
    retried, since nobody classified them)."""
    return DECLINE_CODES.get(code or "", DeclineReason.UNRECOGNIZED)


class MalformedReply(Exception):
    """A Stripe object lacks a field the adapter needs (internal: never leaves the adapter)."""


def _get(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]…`` on Stripe objects (dicts); MalformedReply if any is missing."""
    for name in path:
        if isinstance(obj, stripe.StripeObject):
            obj = obj.to_dict()
        if not isinstance(obj, Mapping) or obj.get(name) is None:
            raise MalformedReply(f"no {'.'.join(path)}")
        obj = obj[name]
    return obj


def _int(obj: Any, *path: str) -> int:
    value = _get(obj, *path)
    if type(value) is not int:
        raise MalformedReply(f"{'.'.join(path)} is not an integer")
    return value


def _opt(obj: Any, *path: str) -> Any:
    try:
        return _get(obj, *path)
    except MalformedReply:
        return None


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

    capabilities: Final = Capabilities(incremental_authorization=True, customer_action=True)

    def __init__(
        self,
        api_key: str,
        *,
        timeout_s: float = 20.0,
        http_client: stripe.HTTPClient | None = None,
        base_url: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        client = http_client if http_client is not None else SettlementHttpClient(timeout_s)
        addresses: Any = {"api": base_url.rstrip("/")} if base_url else None
        self.client = stripe.StripeClient(
            api_key, http_client=client, max_network_retries=0, base_addresses=addresses
        )
        self.clock = clock if clock is not None else SystemClock()

    # -- calls -------------------------------------------------------------------------------

    async def _retrieve(self, intent_id: str) -> Any:
        try:
            return await self.client.v1.payment_intents.retrieve_async(
                intent_id, {"expand": ["latest_charge"]}
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc

    async def _parsed(self, intent: Any, parse: Callable[[Any], T]) -> T:
        """``parse(intent)``; if a field is missing, retrieve the intent and parse that."""
        try:
            return parse(intent)
        except MalformedReply as first:
            intent_id = _opt(intent, "id")
            if not isinstance(intent_id, str):
                raise GatewayUnavailable(
                    f"stripe: malformed reply ({first}), no intent id"
                ) from None
            log.warning("malformed stripe reply", extra={"fields": {"why": str(first)}})
            try:
                return parse(await self._retrieve(intent_id))
            except MalformedReply as second:
                raise GatewayUnavailable(f"stripe: malformed intent ({second})") from None

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
                    # Cards only, no redirect-based methods: a confirmed intent then needs no
                    # return_url (3-D Secure still happens, through the client secret).
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                    "confirm": True,
                    "capture_method": "manual",
                    "payment_method_options": {
                        "card": {"request_incremental_authorization": "if_available"}
                    },
                    "metadata": {AUTH_KEY_METADATA: idempotency_key},
                    "expand": ["latest_charge"],
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            return await self._declined_hold(exc, currency, idempotency_key)
        except stripe.StripeError as exc:
            if _server_error(exc):
                found = await self._find_by_metadata(AUTH_KEY_METADATA, idempotency_key)
                if found is not None:
                    return await self._hold_of(found, currency, idempotency_key)
            raise _translate(exc) from exc
        return await self._hold_of(intent, currency, idempotency_key)

    async def _declined_hold(self, exc: stripe.CardError, currency: str, key: str) -> Hold:
        code = _decline_code(exc)
        intent_id = _opt(exc.json_body, "error", "payment_intent", "id") or ""
        if intent_id:
            await self._cancel_quietly(intent_id, key)
        return Hold(
            Outcome.DECLINED,
            auth_ref=intent_id,
            currency=currency,
            decline_reason=decline_reason(code),
            processor_ref=intent_id,
            decline_code=code,
            advice_code=_advice_code(exc),
        )

    async def _cancel_quietly(self, intent_id: str, key: str) -> None:
        """Cancel an intent that will never hold anything, so nothing stays open at Stripe."""
        try:
            await self.client.v1.payment_intents.cancel_async(
                intent_id, {}, {"idempotency_key": f"{key}:cancel"}
            )
        except stripe.StripeError as exc:
            log.warning(
                "could not cancel a declined intent",
                extra={"fields": {"intent": intent_id, "why": str(exc)}},
            )

    async def _hold_of(self, intent: Any, currency: str, key: str) -> Hold:
        status = await self._parsed(intent, lambda i: str(_get(i, "status")))
        if status == "requires_action":
            # The saved answer to this key may predate the customer's challenge: ask anew.
            intent = await self._retrieve(await self._parsed(intent, lambda i: str(_get(i, "id"))))
            status = await self._parsed(intent, lambda i: str(_get(i, "status")))
        if status == "requires_capture":
            return await self._parsed(intent, lambda i: self._approved(i, currency))
        if status == "requires_action":
            return await self._parsed(intent, lambda i: _action_required(i, currency))
        intent_id, code = await self._parsed(intent, _failure)
        if status != "canceled":
            await self._cancel_quietly(intent_id, key)
        return Hold(
            Outcome.DECLINED,
            auth_ref=intent_id,
            currency=currency,
            decline_reason=decline_reason(code) if code else DeclineReason.DO_NOT_HONOR,
            processor_ref=intent_id,
            decline_code=code,
        )

    def _approved(self, intent: Any, currency: str) -> Hold:
        intent_id = str(_get(intent, "id"))
        return Hold(
            Outcome.APPROVED,
            auth_ref=intent_id,
            # A partial authorization holds less than asked: the cap is what is held.
            amount_minor=_int(intent, "amount_capturable"),
            currency=currency,
            expires_at_ms=self._expiry_ms(intent),
            processor_ref=str(_opt(intent, "latest_charge", "id") or intent_id),
        )

    def _expiry_ms(self, intent: Any) -> int:
        capture_before = _opt(intent, "latest_charge", "payment_method_details", "card")
        if (
            isinstance(capture_before, Mapping)
            and type(capture_before.get("capture_before")) is int
        ):
            return int(capture_before["capture_before"]) * 1_000
        created = _opt(intent, "latest_charge", "created") or _opt(intent, "created")
        base_ms = int(created) * 1_000 if type(created) is int else self.clock.now_ms()
        return base_ms + HOLD_TTL_MS_DEFAULT

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Raise the hold to ``amount_minor`` in total (incremental authorization)."""
        try:
            intent = await self.client.v1.payment_intents.increment_authorization_async(
                auth_ref,
                {"amount": amount_minor, "expand": ["latest_charge"]},
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            code = _decline_code(exc)
            return Hold(
                Outcome.DECLINED,
                auth_ref=auth_ref,
                decline_reason=decline_reason(code),
                processor_ref=auth_ref,
                decline_code=code,
                advice_code=_advice_code(exc),
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        currency = await self._parsed(intent, lambda i: str(_get(i, "currency")).upper())
        return await self._hold_of(intent, currency, idempotency_key)

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Capture ``amount_minor``; Stripe releases the rest of the hold."""
        try:
            intent = await self._send_capture(idempotency_key, auth_ref, amount_minor)
        except stripe.CardError as exc:
            code = _decline_code(exc)
            return CaptureResult(
                Outcome.DECLINED,
                decline_reason=decline_reason(code),
                processor_ref=auth_ref,
                decline_code=code,
                advice_code=_advice_code(exc),
            )
        except stripe.StripeError as exc:
            if not (_server_error(exc) or _unexpected_state(exc)):
                raise _translate(exc) from exc
            intent = await self._reconcile_capture(exc, idempotency_key, auth_ref, amount_minor)
        return await self._parsed(intent, _capture)

    async def _send_capture(self, key: str, auth_ref: str, amount_minor: int) -> Any:
        return await self.client.v1.payment_intents.capture_async(
            auth_ref,
            {"amount_to_capture": amount_minor, "metadata": {CAPTURE_KEY_METADATA: key}},
            {"idempotency_key": key},
        )

    async def _reconcile_capture(
        self, exc: stripe.StripeError, key: str, auth_ref: str, amount_minor: int
    ) -> Any:
        """After a 5xx (perhaps a saved one) or "unexpected state" (perhaps a forgotten key):
        what the intent says is the truth."""
        intent = await self._retrieve(auth_ref)
        status = _opt(intent, "status")
        if status == "succeeded":
            return intent
        if status != "requires_capture" or not _server_error(exc):
            raise _translate(exc) from exc
        # Not captured: send it once more under a key of its own, since Stripe would replay the
        # saved 5xx to the first. An intent captures at most once, so this cannot charge twice.
        try:
            return await self._send_capture(key + RECONCILE_SUFFIX, auth_ref, amount_minor)
        except stripe.StripeError as again:
            raise _translate(again) from again

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """Cancel the PaymentIntent: the hold is released, nothing captured."""
        try:
            intent = await self.client.v1.payment_intents.cancel_async(
                auth_ref, {"cancellation_reason": "abandoned"}, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            if not (_server_error(exc) or _unexpected_state(exc)):
                raise _translate(exc) from exc
            intent = await self._retrieve(auth_ref)
            if _opt(intent, "status") != "canceled":
                raise _translate(exc) from exc
        return await self._parsed(
            intent,
            lambda i: VoidResult(
                auth_ref=str(_get(i, "id")),
                released_minor=_int(i, "amount"),
                processor_ref=str(_get(i, "id")),
            ),
        )

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
        refund_id = _opt(refund, "id")
        if not isinstance(refund_id, str):
            raise GatewayUnavailable("stripe: a refund without an id")
        total = _opt(refund, "charge", "amount_refunded")
        amount = _opt(refund, "amount")
        return RefundResult(
            refund_id,
            capture_id,
            amount if type(amount) is int else amount_minor,
            total if type(total) is int else amount_minor,
            processor_ref=refund_id,
        )

    async def lookup(
        self, idempotency_key: str
    ) -> Hold | CaptureResult | VoidResult | RefundResult | None:
        """The capture made with ``idempotency_key``, found through the intents' metadata.

        Search is not read-after-write (it lags up to a minute): the worker and reconciliation
        use :meth:`lookup_authorization`; this serves support, by key.
        """
        found = await self._find_by_metadata(CAPTURE_KEY_METADATA, idempotency_key)
        if found is not None and _opt(found, "status") == "succeeded":
            return await self._parsed(found, _capture)
        return None

    async def _find_by_metadata(self, name: str, key: str) -> Any:
        try:
            found = await self.client.v1.payment_intents.search_async(
                {"query": f"metadata['{name}']:'{key}'", "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        data = _opt(found, "data") or []
        return data[0] if data else None

    async def lookup_authorization(self, auth_ref: str) -> Authorization | None:
        """Where the intent stands now (a retrieve by id: read-after-write)."""
        try:
            intent = await self.client.v1.payment_intents.retrieve_async(
                auth_ref, {"expand": ["latest_charge"]}
            )
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return None
            raise _translate(exc) from exc
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        return await self._parsed(intent, self._authorization)

    def _authorization(self, intent: Any) -> Authorization:
        status = str(_get(intent, "status"))
        received = _opt(intent, "amount_received")
        captured = received if type(received) is int else 0
        expires = self._expiry_ms(intent)
        held = {
            "succeeded": AuthorizationStatus.CAPTURED,
            "requires_action": AuthorizationStatus.ACTION_REQUIRED,
            "requires_payment_method": AuthorizationStatus.DECLINED,
        }
        if status == "canceled":
            automatic = _opt(intent, "cancellation_reason") == "automatic"
            state = AuthorizationStatus.EXPIRED if automatic else AuthorizationStatus.VOIDED
        elif status == "requires_capture":
            lapsed = self.clock.now_ms() >= expires
            state = AuthorizationStatus.EXPIRED if lapsed else AuthorizationStatus.HELD
        else:
            state = held.get(status, AuthorizationStatus.DECLINED)
        intent_id = str(_get(intent, "id"))
        return Authorization(
            auth_ref=intent_id,
            status=state,
            amount_minor=_int(intent, "amount"),
            currency=str(_get(intent, "currency")).upper(),
            captured_minor=captured,
            capture_id=intent_id if state is AuthorizationStatus.CAPTURED else "",
            expires_at_ms=expires,
            processor_ref=str(_opt(intent, "latest_charge", "id") or intent_id),
        )

    # -- hosted payment page (Checkout) ------------------------------------------------------

    async def start_hosted(self, page: HostedPage) -> HostedStart:
        """A Checkout Session of one line of the page's amount, captured at once. Stripe replays
        the session to the same key, so asking again for one attempt finds the same page."""
        joiner = "&" if "?" in page.return_url else "?"
        try:
            session = await self.client.v1.checkout.sessions.create_async(
                {
                    "mode": "payment",
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": page.currency.lower(),
                                "unit_amount": page.amount_minor,
                                "product_data": {"name": page.description},
                            },
                        }
                    ],
                    "payment_intent_data": {
                        "capture_method": "automatic",
                        "metadata": {HOSTED_KEY_METADATA: page.idempotency_key},
                    },
                    "metadata": {HOSTED_KEY_METADATA: page.idempotency_key},
                    "expires_at": self.clock.now_ms() // 1_000 + CHECKOUT_TTL_S_DEFAULT,
                    # Stripe fills in the session id; the return page asks Stripe about it.
                    "success_url": f"{page.return_url}{joiner}session_id={{CHECKOUT_SESSION_ID}}",
                    "cancel_url": page.return_url,
                },
                {"idempotency_key": page.idempotency_key},
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        url = _opt(session, "url")
        session_id = _opt(session, "id")
        if not isinstance(url, str) or not isinstance(session_id, str):
            raise GatewayUnavailable("stripe: a Checkout Session without its url or id")
        return HostedStart(redirect_url=url, reference=session_id)

    async def hosted_result(self, *, idempotency_key: str, reference: str) -> HostedResult:
        """What became of Checkout Session ``reference`` (asked of Stripe, never read from the
        return URL). A decline on Stripe's page leaves the session open: the customer may try
        another card there."""
        if not reference.startswith("cs_"):
            raise GatewayRequestError(f"stripe: {reference!r} is not a Checkout Session id")
        try:
            session = await self.client.v1.checkout.sessions.retrieve_async(
                reference, {"expand": ["payment_intent"]}
            )
        except stripe.StripeError as exc:
            raise _translate(exc) from exc
        if _opt(session, "metadata", HOSTED_KEY_METADATA) != idempotency_key:
            raise GatewayRequestError("stripe: the Checkout Session belongs to another payment")
        if _opt(session, "payment_status") == "paid":
            intent = _opt(session, "payment_intent")
            intent_id = _opt(intent, "id") if not isinstance(intent, str) else intent
            amount = _opt(session, "amount_total")
            if not isinstance(intent_id, str) or not isinstance(amount, int):
                raise GatewayUnavailable("stripe: a paid Checkout Session without its payment")
            return HostedResult(HostedStatus.PAID, capture_id=intent_id, amount_minor=amount)
        if _opt(session, "status") == "expired":
            return HostedResult(HostedStatus.EXPIRED)
        return HostedResult(HostedStatus.OPEN)


def _decline_code(exc: stripe.CardError) -> str:
    error = _opt(exc.json_body, "error") or {}
    code = error.get("decline_code") or error.get("code") or exc.code or ""
    return str(code)


def _advice_code(exc: stripe.CardError) -> str:
    """The card network's advice code Stripe relays (``network_advice_code``)."""
    return str(_opt(exc.json_body, "error", "network_advice_code") or "")


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value).lower()
    return None


def _server_error(exc: stripe.StripeError) -> bool:
    """The request may have committed: no answer, or a 5xx (perhaps Stripe's saved one)."""
    if isinstance(exc, stripe.APIConnectionError):
        return True
    return exc.http_status is not None and exc.http_status >= 500


def _unexpected_state(exc: stripe.StripeError) -> bool:
    return exc.code == "payment_intent_unexpected_state"


def _translate(exc: stripe.StripeError) -> Exception:
    status = exc.http_status
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError) or status in (401, 403):
        return GatewayCredentialsRejected(f"stripe rejected the API key: {exc}")
    if _server_error(exc) or isinstance(exc, stripe.RateLimitError):
        return GatewayUnavailable(f"stripe: {exc}")
    if status is None or status < 400:
        # An answer the SDK could not read (a 200 with a broken body): unknown outcome.
        return GatewayUnavailable(f"stripe: unreadable reply: {exc}")
    should_retry = _header(exc, "stripe-should-retry")
    if should_retry == "true":
        return GatewayUnavailable(f"stripe (should retry): {exc}")
    if should_retry == "false":
        return GatewayRequestError(f"stripe (should not retry): {exc}")
    if status == 409:
        # 409 Conflict: a request with the same key is still in flight (another worker):
        # retry later with the same key. (A key reused with other parameters is a 400
        # idempotency_error: a request error, as the protocol says.)
        return GatewayUnavailable(f"stripe: {exc}")
    return GatewayRequestError(f"stripe: {exc}")


def _action_required(intent: Any, currency: str) -> Hold:
    intent_id = str(_get(intent, "id"))
    next_action = _opt(intent, "next_action") or {}
    if isinstance(next_action, stripe.StripeObject):
        next_action = next_action.to_dict()
    return Hold(
        Outcome.ACTION_REQUIRED,
        auth_ref=intent_id,
        amount_minor=_int(intent, "amount"),
        currency=currency,
        processor_ref=intent_id,
        action=CustomerAction(
            kind=str(next_action.get("type") or "use_stripe_sdk"),
            client_secret=str(_get(intent, "client_secret")),
            redirect_url=str(_opt(next_action, "redirect_to_url", "url") or ""),
        ),
    )


def _failure(intent: Any) -> tuple[str, str]:
    """An intent that holds nothing: its id and the decline code of its last error."""
    error = _opt(intent, "last_payment_error") or {}
    if isinstance(error, stripe.StripeObject):
        error = error.to_dict()
    code = error.get("decline_code") or error.get("code") or ""
    return str(_get(intent, "id")), str(code)


def _capture(intent: Any) -> CaptureResult:
    if _get(intent, "status") != "succeeded":
        raise MalformedReply(f"a captured intent in status {_opt(intent, 'status')!r}")
    received = _int(intent, "amount_received")
    intent_id = str(_get(intent, "id"))
    return CaptureResult(
        Outcome.APPROVED,
        capture_id=intent_id,
        amount_minor=received,
        released_minor=max(_int(intent, "amount") - received, 0),
        processor_ref=str(_opt(intent, "latest_charge", "id") or intent_id),
    )
