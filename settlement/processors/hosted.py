"""Hosted payment pages: a processor takes the customer's card on its own page.

A pay link (docs/collection.md) sends the customer to the card form of the processor that the
case uses. The sandbox has a card page of its own in tipmeter; a real processor has a hosted
confirmation flow instead, and an adapter that offers one implements :class:`HostedCheckout`
beside the gateway protocol:

1. :meth:`HostedCheckout.start_hosted` asks the processor for a payment page of the amount,
   under the caller's idempotency key (the collection attempt's, so asking again for the same
   attempt finds the same page), with the URL the processor sends the customer back to; it
   answers where to send the customer (:class:`HostedStart`).
2. The processor sends the customer back (the return URL) and, for some, tells the server
   (a webhook, a postback). Neither is trusted as it comes: the caller asks
   :meth:`HostedCheckout.hosted_result` — the processor itself, server to server, by the
   reference — what became of the payment (:class:`HostedResult`): paid with the processor's
   capture id, declined with our reason, or still open (the customer is on the page, or left).

Stripe: a Checkout Session (``mode=payment``) whose PaymentIntent captures at once. Segpay: its
hosted payment page for the Post Pay price point, confirmed by a status request. Each adapter's
module says what it sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from settlement.gateway import DeclineReason


class HostedStatus(StrEnum):
    """What became of a hosted payment."""

    PAID = "paid"
    DECLINED = "declined"
    #: Nothing decided yet: the customer is on the page, or left it before paying.
    OPEN = "open"
    #: The page can no longer be paid (it expired, or was cancelled) and nothing was paid.
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class HostedPage:
    """What a payment page is asked for: one charge of ``amount_minor``, captured at once."""

    #: The caller's key (the collection attempt's): asking again finds the same page.
    idempotency_key: str
    amount_minor: int
    currency: str
    #: Where the processor sends the customer back, paid or not.
    return_url: str
    #: What the customer reads on the page.
    description: str


@dataclass(frozen=True, slots=True)
class HostedStart:
    """Where to send the customer, and the processor's reference of the page."""

    redirect_url: str
    reference: str


@dataclass(frozen=True, slots=True)
class HostedResult:
    """The processor's answer about one hosted payment."""

    status: HostedStatus
    capture_id: str = ""
    amount_minor: int = 0
    decline_reason: DeclineReason | None = None
    decline_code: str = ""


@runtime_checkable
class HostedCheckout(Protocol):
    """A processor's hosted payment page (see the module docstring)."""

    async def start_hosted(self, page: HostedPage) -> HostedStart:
        """Ask for ``page``: one charge, captured at once."""
        ...

    async def hosted_result(self, *, idempotency_key: str, reference: str) -> HostedResult:
        """What became of the payment started under ``idempotency_key`` (``reference``: what
        the processor handed back, a session or a transaction id; may be empty)."""
        ...
