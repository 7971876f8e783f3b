"""A Segpay Post Pay adapter of the gateway protocol.

What Segpay's public documentation settles (the "Post Pay" article of its knowledge base):
Post Pay authorizes a dollar amount up front, which the consumer cannot exceed while making
smaller purchases; when the consumer is done, or has spent it all, an on-demand capture request
finalizes any amount up to it. The authorization is a server-to-server ``POST`` to
``/PostPay/PostPayAuth/`` on ``transactions.segpay.com`` with three form fields: ``eticketid``
(the Post Pay–enabled price point, ``<package>:<price point>``), ``purchaseid`` (the consumer's
stored purchase, as for one-click) and ``amount`` (decimal dollars, ``"20.00"``). Requests come
from server IPs that Segpay whitelists; postbacks report results. Post Pay price points are not
eligible for Dynamic Multi-Currency, so an amount is in the price point's currency (USD here).

Everything else is an assumption, and every assumption lives in :class:`SegpayWire` — the one
place to edit once Segpay confirms it (docs/processors.md lists them, "to confirm with
Segpay"): the capture request's path and fields, the reply's format and fields, the decline
codes, whether an authorization can be voided, looked up or refunded by API, how long it lasts,
and whether a repeated request is recognized (idempotency). The local test process
(:mod:`settlement.processors.segpay_emulator`) speaks exactly :class:`SegpayWire`.

Consequences of what is not there:

- **No increment** (``capabilities.incremental_authorization`` is False): a raise takes a second
  Post Pay authorization under the same tab, and the tab settles with one capture per
  authorization (the viewer's statement says so).
- **No documented idempotency**: the adapter sends our key as :attr:`SegpayWire.REFERENCE_FIELD`
  (to confirm that Segpay refuses a repeated reference). Until confirmed, a repeated capture is
  safe only because a finalized authorization cannot be captured again (to confirm too).
- **No documented void**: :meth:`SegpayGateway.void` asks nothing and reports nothing released
  now; an authorization that is never captured lapses at its expiry.

The hosted payment page (:class:`settlement.processors.hosted.HostedCheckout`), for a pay link:
the customer is sent to Segpay's payment page of the price point with the amount, our key as
the reference and the link's return page as the approved and declined links; Segpay charges
there, posts a postback to the server and sends the customer back. Neither the return nor the
postback is trusted as it comes: :meth:`SegpayGateway.hosted_result` asks Segpay's status
request by our reference. Every name of that flow is in :class:`SegpayWire`, to confirm.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl, urlencode

from metering.clock import Clock, SystemClock
from metering.money import is_positive_amount
from settlement import http
from settlement.gateway import (
    Authorization,
    AuthorizationStatus,
    Capabilities,
    CaptureResult,
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

log = logging.getLogger("tipmeter.processors.segpay")

#: Largest reply read from Segpay.
REPLY_BYTES_MAX: Final = 65_536


class SegpayWire:
    """Every fact about Segpay's Post Pay requests and replies, documented or assumed.

    ``DOCUMENTED`` facts come from Segpay's public Post Pay article; every other constant is an
    assumption **to confirm with Segpay** before production.
    """

    # -- documented ---------------------------------------------------------------------------
    AUTH_PATH: Final = "/PostPay/PostPayAuth/"
    AUTH_FIELDS: Final = ("eticketid", "purchaseid", "amount")
    #: Post Pay price points are not eligible for Dynamic Multi-Currency.
    CURRENCY: Final = "USD"
    DOCUMENTED: Final = ("AUTH_PATH", "AUTH_FIELDS", "CURRENCY")

    # -- to confirm with Segpay ---------------------------------------------------------------
    #: The capture request: path, and the field naming the authorization.
    CAPTURE_PATH: Final = "/PostPay/PostPayCapture/"
    AUTH_REF_FIELD: Final = "transactionid"
    #: A status request by authorization (for lookups and reconciliation).
    STATUS_PATH: Final = "/PostPay/PostPayStatus/"
    #: Our idempotency key, sent with every request, hoping Segpay refuses a repeated one.
    REFERENCE_FIELD: Final = "merchantreference"
    #: Replies: ``key=value`` pairs, form-encoded or one per line.
    RESULT_FIELD: Final = "result"
    APPROVED: Final = "approved"
    DECLINED: Final = "declined"
    TRANSACTION_FIELD: Final = "transactionid"
    AMOUNT_FIELD: Final = "amount"
    CODE_FIELD: Final = "declinecode"
    STATUS_FIELD: Final = "status"
    CAPTURED_FIELD: Final = "capturedamount"
    #: How long an authorization lasts (Segpay does not say; card networks allow 7 days).
    HOLD_TTL_MS: Final = 7 * 24 * 3_600_000
    #: Decline codes: ISO 8583 response codes, as most acquirers report them.
    DECLINE_CODES: Final[Mapping[str, DeclineReason]] = {
        "05": DeclineReason.DO_NOT_HONOR,
        "51": DeclineReason.INSUFFICIENT_FUNDS,
        "61": DeclineReason.INSUFFICIENT_FUNDS,
        "54": DeclineReason.EXPIRED_CARD,
        "41": DeclineReason.LOST_CARD,
        "43": DeclineReason.STOLEN_CARD,
        "04": DeclineReason.PICKUP_CARD,
        "07": DeclineReason.PICKUP_CARD,
        "14": DeclineReason.INVALID_CARD,
        "57": DeclineReason.RESTRICTED_CARD,
        "62": DeclineReason.RESTRICTED_CARD,
        "59": DeclineReason.FRAUDULENT,
        "63": DeclineReason.SECURITY_VIOLATION,
        "R0": DeclineReason.STOP_PAYMENT_ORDER,
        "R1": DeclineReason.REVOCATION_OF_AUTHORIZATION,
        "91": DeclineReason.TRY_AGAIN_LATER,
        "96": DeclineReason.PROCESSING_ERROR,
    }
    #: The hosted payment page (Segpay serves it on its ``secure2`` host; here on the base URL
    #: unless ``hosted_url`` is given) and its query fields: the price point, the amount, our
    #: reference, where the customer returns after an approval and after a decline.
    HOSTED_PATH: Final = "/billing/poset.cgi"
    HOSTED_ETICKET_FIELD: Final = "x-eticketid"
    HOSTED_AMOUNT_FIELD: Final = "amount"
    HOSTED_APPROVED_LINK_FIELD: Final = "x-auth-link"
    HOSTED_DECLINED_LINK_FIELD: Final = "x-decl-link"
    #: A status request may name the payment by our reference instead of its transaction.
    #: Its reply says ``captured`` (paid), ``declined`` (with ``declinecode``) or ``unknown``.
    #: Postbacks carry the reply fields (``result``, ``transactionid``, ``amount``,
    #: ``declinecode``) and our reference.
    #: Segpay statuses (of :data:`STATUS_PATH`) → ours.
    STATUSES: Final[Mapping[str, AuthorizationStatus]] = {
        "authorized": AuthorizationStatus.HELD,
        "captured": AuthorizationStatus.CAPTURED,
        "expired": AuthorizationStatus.EXPIRED,
        "declined": AuthorizationStatus.DECLINED,
    }


def dollars(amount_minor: int) -> str:
    """``2000`` → ``"20.00"`` (integer arithmetic; the documented ``amount`` format)."""
    whole, cents = divmod(amount_minor, 100)
    return f"{whole}.{cents:02d}"


def minor_of(text: str) -> int:
    """``"20.00"`` → ``2000``; ValueError for anything but ``digits[.dd]``."""
    whole, _, cents = text.strip().partition(".")
    if not whole.isdigit() or not (cents == "" or (cents.isdigit() and len(cents) <= 2)):
        raise ValueError(f"not a dollar amount: {text!r}")
    return int(whole) * 100 + int(cents.ljust(2, "0") or "0")


def parse_reply(body: bytes) -> dict[str, str]:
    """A reply's ``key=value`` pairs (form-encoded, or one per line); keys lower-cased."""
    text = body.decode("utf-8", "replace").strip()
    pairs = parse_qsl(text.replace("\r\n", "&").replace("\n", "&"), keep_blank_values=True)
    return {k.strip().lower(): v.strip() for k, v in pairs}


class SegpayGateway:
    """:class:`settlement.gateway.Gateway` over Segpay Post Pay (see the module docstring)."""

    capabilities: Final = Capabilities(
        incremental_authorization=False,
        partial_capture=True,
        void=False,
        refund=False,
        lookup=True,
        customer_action=False,
        idempotency=False,
    )

    def __init__(
        self,
        base_url: str,
        *,
        eticket_id: str,
        timeout_s: float = 20.0,
        clock: Clock | None = None,
        hosted_url: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: Where Segpay's payment page is (its own host in production; to confirm).
        self.hosted_url = (hosted_url or base_url).rstrip("/")
        self.eticket_id = eticket_id
        self.timeout_s = timeout_s
        self.clock = clock if clock is not None else SystemClock()

    async def _post(self, path: str, fields: Mapping[str, str]) -> dict[str, str]:
        try:
            reply = await http.request(
                "POST",
                self.base_url + path,
                body=urlencode(fields).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout_s=self.timeout_s,
                reply_bytes_max=REPLY_BYTES_MAX,
            )
        except http.HttpFailure as exc:
            raise GatewayUnavailable(f"segpay: {exc}") from exc
        if reply.status in (401, 403):
            raise GatewayCredentialsRejected(
                f"segpay answered {reply.status}: is this server's IP whitelisted?"
            )
        if reply.status >= 500:
            raise GatewayUnavailable(f"segpay answered {reply.status}")
        if reply.status != 200:
            raise GatewayRequestError(f"segpay answered {reply.status}: {reply.body[:200]!r}")
        return parse_reply(reply.body)

    @staticmethod
    def _reason(data: Mapping[str, str]) -> tuple[DeclineReason, str]:
        code = data.get(SegpayWire.CODE_FIELD, "")
        return SegpayWire.DECLINE_CODES.get(code, DeclineReason.UNRECOGNIZED), code

    @staticmethod
    def _result(data: Mapping[str, str]) -> str:
        result = data.get(SegpayWire.RESULT_FIELD, "").lower()
        if result not in (SegpayWire.APPROVED, SegpayWire.DECLINED):
            # The request may or may not have been acted on: the caller retries, same key.
            raise GatewayUnavailable(f"segpay: a reply without a result ({sorted(data)})")
        return result

    async def authorize(
        self, *, idempotency_key: str, payment_method: str, amount_minor: int, currency: str
    ) -> Hold:
        """``PostPayAuth`` for ``amount_minor`` on the stored purchase ``payment_method``."""
        if currency != SegpayWire.CURRENCY or not is_positive_amount(amount_minor):
            raise GatewayRequestError(
                f"segpay Post Pay authorizes positive {SegpayWire.CURRENCY} amounts only"
            )
        data = await self._post(
            SegpayWire.AUTH_PATH,
            {
                "eticketid": self.eticket_id,
                "purchaseid": payment_method,
                "amount": dollars(amount_minor),
                SegpayWire.REFERENCE_FIELD: idempotency_key,
            },
        )
        transaction = data.get(SegpayWire.TRANSACTION_FIELD, "")
        if self._result(data) == SegpayWire.DECLINED:
            reason, code = self._reason(data)
            return Hold(
                Outcome.DECLINED,
                auth_ref=transaction,
                currency=currency,
                decline_reason=reason,
                processor_ref=transaction,
                decline_code=code,
            )
        if not transaction:
            raise GatewayUnavailable("segpay: an approval without a transaction id")
        return Hold(
            Outcome.APPROVED,
            auth_ref=transaction,
            amount_minor=self._amount(data, amount_minor),
            currency=currency,
            expires_at_ms=self.clock.now_ms() + SegpayWire.HOLD_TTL_MS,
            processor_ref=transaction,
        )

    @staticmethod
    def _amount(data: Mapping[str, str], default: int) -> int:
        raw = data.get(SegpayWire.AMOUNT_FIELD)
        if not raw:
            return default
        try:
            return minor_of(raw)
        except ValueError:
            raise GatewayUnavailable(f"segpay: a malformed amount {raw!r}") from None

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Post Pay has no increment: a raise takes a second authorization (the caller's job)."""
        raise GatewayRequestError("segpay Post Pay has no incremental authorization")

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Finalize ``amount_minor`` (at most the authorization) of ``auth_ref``."""
        if not is_positive_amount(amount_minor):
            raise GatewayRequestError("a capture takes a positive amount")
        data = await self._post(
            SegpayWire.CAPTURE_PATH,
            {
                SegpayWire.AUTH_REF_FIELD: auth_ref,
                "amount": dollars(amount_minor),
                SegpayWire.REFERENCE_FIELD: idempotency_key,
            },
        )
        transaction = data.get(SegpayWire.TRANSACTION_FIELD, "") or auth_ref
        if self._result(data) == SegpayWire.DECLINED:
            reason, code = self._reason(data)
            return CaptureResult(
                Outcome.DECLINED,
                decline_reason=reason,
                processor_ref=transaction,
                decline_code=code,
            )
        captured = self._amount(data, amount_minor)
        return CaptureResult(
            Outcome.APPROVED,
            capture_id=transaction,
            amount_minor=captured,
            processor_ref=transaction,
        )

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """No documented void: nothing is asked; the authorization lapses at its expiry."""
        return VoidResult(auth_ref=auth_ref, released_minor=0, processor_ref=auth_ref)

    async def refund(
        self, *, idempotency_key: str, capture_id: str, amount_minor: int
    ) -> RefundResult:
        """No documented refund API for Post Pay: refunds go through Segpay's merchant portal."""
        raise GatewayRequestError("segpay Post Pay refunds go through the merchant portal")

    async def lookup(
        self, idempotency_key: str
    ) -> Hold | CaptureResult | VoidResult | RefundResult | None:
        """Segpay offers no lookup by our key (to confirm): always None."""
        return None

    async def lookup_authorization(self, auth_ref: str) -> Authorization | None:
        """The status of authorization ``auth_ref`` (:attr:`SegpayWire.STATUS_PATH`)."""
        data = await self._post(SegpayWire.STATUS_PATH, {SegpayWire.AUTH_REF_FIELD: auth_ref})
        status = SegpayWire.STATUSES.get(data.get(SegpayWire.STATUS_FIELD, "").lower())
        if status is None:
            return None
        captured = 0
        if data.get(SegpayWire.CAPTURED_FIELD):
            captured = self._amount({SegpayWire.AMOUNT_FIELD: data[SegpayWire.CAPTURED_FIELD]}, 0)
        return Authorization(
            auth_ref=auth_ref,
            status=status,
            amount_minor=self._amount(data, 0),
            currency=SegpayWire.CURRENCY,
            captured_minor=captured,
            capture_id=auth_ref if status is AuthorizationStatus.CAPTURED else "",
            processor_ref=auth_ref,
        )

    # -- hosted payment page -----------------------------------------------------------------

    async def start_hosted(self, page: HostedPage) -> HostedStart:
        """The payment page's URL (nothing is asked of Segpay until the customer pays)."""
        if page.currency != SegpayWire.CURRENCY or not is_positive_amount(page.amount_minor):
            raise GatewayRequestError(
                f"segpay pages charge positive {SegpayWire.CURRENCY} amounts only"
            )
        query = urlencode(
            {
                SegpayWire.HOSTED_ETICKET_FIELD: self.eticket_id,
                SegpayWire.HOSTED_AMOUNT_FIELD: dollars(page.amount_minor),
                SegpayWire.REFERENCE_FIELD: page.idempotency_key,
                SegpayWire.HOSTED_APPROVED_LINK_FIELD: page.return_url,
                SegpayWire.HOSTED_DECLINED_LINK_FIELD: page.return_url,
            }
        )
        return HostedStart(
            redirect_url=f"{self.hosted_url}{SegpayWire.HOSTED_PATH}?{query}", reference=""
        )

    async def hosted_result(self, *, idempotency_key: str, reference: str) -> HostedResult:
        """Ask Segpay's status request what became of the page paid under our reference."""
        data = await self._post(
            SegpayWire.STATUS_PATH, {SegpayWire.REFERENCE_FIELD: idempotency_key}
        )
        status = data.get(SegpayWire.STATUS_FIELD, "").lower()
        if status == "captured":
            transaction = data.get(SegpayWire.TRANSACTION_FIELD, "")
            if not transaction:
                raise GatewayUnavailable("segpay: a captured payment without a transaction id")
            amount = self._amount(
                {SegpayWire.AMOUNT_FIELD: data.get(SegpayWire.CAPTURED_FIELD, "")}, 0
            )
            return HostedResult(HostedStatus.PAID, capture_id=transaction, amount_minor=amount)
        if status == "declined":
            reason, code = self._reason(data)
            return HostedResult(HostedStatus.DECLINED, decline_reason=reason, decline_code=code)
        return HostedResult(HostedStatus.OPEN)
