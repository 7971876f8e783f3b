"""The payment gateway protocol: hold, raise, capture once, void, refund, look up.

Post Pay is a two-phase transfer. :meth:`Gateway.authorize` places a hold for the cap (the
pending phase); :meth:`Gateway.increment` raises it mid-show; :meth:`Gateway.capture` posts the
accrued amount once and releases the rest; :meth:`Gateway.void` releases a hold with nothing
to capture. Every call carries an idempotency key that the caller derives from the tab or
settlement id — never from a retry counter — so a retry after a timeout can never charge twice:
the gateway answers a repeated key with the result it recorded the first time.

Business outcomes (approved, declined with a reason) are values. Exceptions are for the rest::

    GatewayError
    ├── GatewayUnavailable    no answer: the call may or may not have committed; retry, same key
    │   └── GatewayCredentialsRejected  the processor refuses our credentials (401/403): every
    │                         call will fail until an operator fixes the key; queued work waits
    └── GatewayRequestError   the request is wrong (unknown hold, amount above the hold,
                              the key reused with other parameters): a bug, do not retry

Every outcome carries the processor's own reference of the transaction (``processor_ref``),
so support and reconciliation can find it in the processor's dashboard. A hold may also end
:attr:`Outcome.ACTION_REQUIRED` (3-D Secure / SCA): nothing is held yet, and
:class:`CustomerAction` says what the page must show the customer to complete it.

Processors differ (:class:`Capabilities`): one without incremental authorization raises a cap
by a second hold. :meth:`Gateway.lookup_authorization` tells what became of a hold, by its
reference — what reconciliation and the worker's expiry path ask.

Implementations: :class:`settlement.sandbox.SandboxGateway` (deterministic test cards, ships
with the product); adapters for real processors (:mod:`settlement.processors`) implement the
same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from settlement import retry_rules


class GatewayError(Exception):
    """Root of every exception a gateway raises."""


class GatewayUnavailable(GatewayError):
    """The gateway did not answer in time; the outcome is unknown. Retry with the same key."""


class GatewayCredentialsRejected(GatewayUnavailable):
    """The processor rejected our credentials (a revoked or wrong key).

    A kind of unavailability, not a fault of the request: the settlement waits, uncounted, until
    the key is fixed, instead of dead-lettering every queued tab.
    """


class GatewayRequestError(GatewayError):
    """The request itself is wrong; retrying it cannot succeed."""


class Outcome(StrEnum):
    """What the gateway decided."""

    APPROVED = "approved"
    DECLINED = "declined"
    #: Holds only: the customer must act (3-D Secure / SCA) before anything is held.
    ACTION_REQUIRED = "action_required"


class DeclineReason(StrEnum):
    """Why a card was declined, in the card networks' terms."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    INVALID_CARD = "invalid_card"
    DO_NOT_HONOR = "do_not_honor"
    CARD_NOT_ACTIVE = "card_not_active"
    CARD_NOT_SUPPORTED = "card_not_supported"
    PROCESSING_ERROR = "processing_error"
    TRY_AGAIN_LATER = "try_again_later"
    AUTHENTICATION_REQUIRED = "authentication_required"
    PICKUP_CARD = "pickup_card"
    FRAUDULENT = "fraudulent"
    DO_NOT_TRY_AGAIN = "do_not_try_again"
    REVOCATION_OF_AUTHORIZATION = "revocation_of_authorization"
    STOP_PAYMENT_ORDER = "stop_payment_order"
    RESTRICTED_CARD = "restricted_card"
    SECURITY_VIOLATION = "security_violation"
    #: A decline code the adapter does not know (the raw code is kept in ``decline_code``).
    UNRECOGNIZED = "unrecognized"

    @property
    def retryable(self) -> bool:
        """Whether card-network rules allow trying this card again later
        (:mod:`settlement.retry_rules`: never after a "will never approve" decline)."""
        return retry_rules.rule_for(self).retryable

    @property
    def cascades(self) -> bool:
        """Whether a hold declined so may be tried at the next eligible processor."""
        return retry_rules.rule_for(self).cascades


@dataclass(frozen=True, slots=True)
class CustomerAction:
    """What the page needs to let the customer complete a 3-D Secure / SCA challenge.

    ``client_secret`` is for the processor's browser SDK (Stripe.js ``handleNextAction``);
    ``redirect_url`` is where to send the customer when the processor uses a redirect. After the
    challenge the cam site repeats the request that asked for the hold (same Idempotency-Key):
    the adapter then finds the hold in place.
    """

    kind: str
    client_secret: str = ""
    redirect_url: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a processor can do, as far as Post Pay needs it (docs/processors.md has the table)."""

    #: Raise a hold in place; without it a raise takes a second hold under the same tab.
    incremental_authorization: bool = True
    partial_capture: bool = True
    void: bool = True
    refund: bool = True
    #: Look a hold up by its reference (reconciliation, the worker's expiry path).
    lookup: bool = True
    #: May answer a hold with ACTION_REQUIRED (3-D Secure).
    customer_action: bool = False
    #: Replays the first answer to a repeated idempotency key.
    idempotency: bool = True


@dataclass(frozen=True, slots=True)
class Hold:
    """The result of authorize or increment: a hold on the card, or a decline."""

    outcome: Outcome
    auth_ref: str = ""
    amount_minor: int = 0
    currency: str = ""
    expires_at_ms: int = 0
    decline_reason: DeclineReason | None = None
    #: The processor's own reference of this transaction (also on declines, when it has one).
    processor_ref: str = ""
    #: The processor's raw decline code, as it sent it.
    decline_code: str = ""
    #: The card network's merchant advice code, when sent (Mastercard's override the retry
    #: category: settlement.retry_rules.MASTERCARD_ADVICE).
    advice_code: str = ""
    #: Set when ``outcome`` is ACTION_REQUIRED.
    action: CustomerAction | None = None

    @property
    def approved(self) -> bool:
        """True when the hold is in place."""
        return self.outcome is Outcome.APPROVED


@dataclass(frozen=True, slots=True)
class CaptureResult:
    """The result of the single capture of a hold (the rest of the hold is released)."""

    outcome: Outcome
    capture_id: str = ""
    amount_minor: int = 0
    released_minor: int = 0
    decline_reason: DeclineReason | None = None
    processor_ref: str = ""
    decline_code: str = ""
    advice_code: str = ""

    @property
    def approved(self) -> bool:
        """True when the money was captured."""
        return self.outcome is Outcome.APPROVED


@dataclass(frozen=True, slots=True)
class VoidResult:
    """The result of releasing a hold without capturing anything."""

    auth_ref: str
    released_minor: int
    processor_ref: str = ""


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The result of refunding (part of) a capture."""

    refund_id: str
    capture_id: str
    amount_minor: int
    refunded_total_minor: int
    processor_ref: str = ""


class AuthorizationStatus(StrEnum):
    """Where a hold stands at its processor."""

    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    ACTION_REQUIRED = "action_required"
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class Authorization:
    """A hold as its processor records it now (:meth:`Gateway.lookup_authorization`)."""

    auth_ref: str
    status: AuthorizationStatus
    amount_minor: int
    currency: str
    captured_minor: int = 0
    capture_id: str = ""
    expires_at_ms: int = 0
    processor_ref: str = ""

    def capture_result(self) -> CaptureResult | None:
        """The capture this hold had, as the capture call would have answered it."""
        if self.status is not AuthorizationStatus.CAPTURED:
            return None
        return CaptureResult(
            Outcome.APPROVED,
            capture_id=self.capture_id,
            amount_minor=self.captured_minor,
            released_minor=max(self.amount_minor - self.captured_minor, 0),
            processor_ref=self.processor_ref,
        )


class Gateway(Protocol):
    """A payment processor, seen through the operations Post Pay needs.

    Every method is idempotent by ``idempotency_key``: the same key with the same parameters
    returns the first result; the same key with other parameters raises GatewayRequestError.
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this processor can do."""
        ...

    async def authorize(
        self, *, idempotency_key: str, payment_method: str, amount_minor: int, currency: str
    ) -> Hold:
        """Place a hold of ``amount_minor`` on ``payment_method``."""
        ...

    async def increment(self, *, idempotency_key: str, auth_ref: str, amount_minor: int) -> Hold:
        """Raise hold ``auth_ref`` to a total of ``amount_minor`` (incremental authorization)."""
        ...

    async def capture(
        self, *, idempotency_key: str, auth_ref: str, amount_minor: int
    ) -> CaptureResult:
        """Capture ``amount_minor`` (at most the hold) once; release the rest of the hold."""
        ...

    async def void(self, *, idempotency_key: str, auth_ref: str) -> VoidResult:
        """Release hold ``auth_ref`` without capturing anything."""
        ...

    async def refund(
        self, *, idempotency_key: str, capture_id: str, amount_minor: int
    ) -> RefundResult:
        """Refund ``amount_minor`` of capture ``capture_id``; refunds never exceed the capture."""
        ...

    async def lookup(
        self, idempotency_key: str
    ) -> Hold | CaptureResult | VoidResult | RefundResult | None:
        """Return the recorded result of the call made with ``idempotency_key``, if any."""
        ...

    async def lookup_authorization(self, auth_ref: str) -> Authorization | None:
        """Where hold ``auth_ref`` stands now (None if the processor has no such hold).

        Read-after-write: a capture that committed is seen at once.
        """
        ...
