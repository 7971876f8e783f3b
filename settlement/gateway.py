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
    └── GatewayRequestError   the request is wrong (unknown hold, amount above the hold,
                              the key reused with other parameters): a bug, do not retry

Implementations: :class:`settlement.sandbox.SandboxGateway` (deterministic test cards, ships
with the product); adapters for real processors implement the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class GatewayError(Exception):
    """Root of every exception a gateway raises."""


class GatewayUnavailable(GatewayError):
    """The gateway did not answer in time; the outcome is unknown. Retry with the same key."""


class GatewayRequestError(GatewayError):
    """The request itself is wrong; retrying it cannot succeed."""


class Outcome(StrEnum):
    """What the gateway decided."""

    APPROVED = "approved"
    DECLINED = "declined"


class DeclineReason(StrEnum):
    """Why a card was declined, in the card networks' terms."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    LOST_CARD = "lost_card"
    STOLEN_CARD = "stolen_card"
    INVALID_CARD = "invalid_card"
    DO_NOT_HONOR = "do_not_honor"
    CARD_NOT_ACTIVE = "card_not_active"

    @property
    def retryable(self) -> bool:
        """Whether card-network rules allow trying this card again later.

        Never retry a card reported lost or stolen, an invalid or closed account, or an expired
        card: retries of those are refused by the networks and count against the merchant.
        """
        return self in (DeclineReason.INSUFFICIENT_FUNDS, DeclineReason.DO_NOT_HONOR)


@dataclass(frozen=True, slots=True)
class Hold:
    """The result of authorize or increment: a hold on the card, or a decline."""

    outcome: Outcome
    auth_ref: str = ""
    amount_minor: int = 0
    currency: str = ""
    expires_at_ms: int = 0
    decline_reason: DeclineReason | None = None

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

    @property
    def approved(self) -> bool:
        """True when the money was captured."""
        return self.outcome is Outcome.APPROVED


@dataclass(frozen=True, slots=True)
class VoidResult:
    """The result of releasing a hold without capturing anything."""

    auth_ref: str
    released_minor: int


@dataclass(frozen=True, slots=True)
class RefundResult:
    """The result of refunding (part of) a capture."""

    refund_id: str
    capture_id: str
    amount_minor: int
    refunded_total_minor: int


class Gateway(Protocol):
    """A payment processor, seen through the operations Post Pay needs.

    Every method is idempotent by ``idempotency_key``: the same key with the same parameters
    returns the first result; the same key with other parameters raises GatewayRequestError.
    """

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
