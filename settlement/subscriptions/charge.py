"""A merchant-initiated charge of the card on file, through the gateway protocol.

A renewal is a merchant-initiated transaction (MIT) on the stored card: the customer is not
there. Every processor of :mod:`settlement.processors` already offers the two halves of it —
:meth:`~settlement.gateway.Gateway.authorize` and :meth:`~settlement.gateway.Gateway.capture` —
so the charge is composed of them here rather than added to each adapter: authorize the amount
with the attempt's idempotency key (``sub:<subscription>:<period>``, and
``sub:<subscription>:<period>:<attempt>`` for a dunning retry), then capture all of it with the
same key and ``:capture``. Both keys derive from the subscription, the period and the attempt,
never from a retry counter of the caller: an attempt run again after a crash or a lost answer
replays the processor's first answers, so a period is never charged twice.

A hold that asks for the customer (3-D Secure) cannot be completed without them: it is a
decline with ``authentication_required`` (the customer updates the card, or pays by link).
"""

from __future__ import annotations

from dataclasses import dataclass

from settlement.gateway import DeclineReason, Gateway, Outcome


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """What one charge ended with: approved with its capture, or declined with the reason."""

    approved: bool
    capture_id: str = ""
    decline_reason: str = ""
    advice_code: str = ""


async def charge_on_file(
    gateway: Gateway,
    *,
    idempotency_key: str,
    payment_method: str,
    amount_minor: int,
    currency: str,
) -> ChargeOutcome:
    """Charge ``amount_minor`` on ``payment_method`` once (by ``idempotency_key``).

    Raises :class:`~settlement.gateway.GatewayError` when the processor does not answer: the
    charge may or may not have happened, and the caller runs it again with the same key.
    """
    hold = await gateway.authorize(
        idempotency_key=idempotency_key,
        payment_method=payment_method,
        amount_minor=amount_minor,
        currency=currency,
    )
    if hold.outcome is Outcome.ACTION_REQUIRED:
        return ChargeOutcome(False, decline_reason=DeclineReason.AUTHENTICATION_REQUIRED.value)
    if not hold.approved:
        reason = hold.decline_reason or DeclineReason.UNRECOGNIZED
        return ChargeOutcome(False, decline_reason=reason.value, advice_code=hold.advice_code)
    captured = await gateway.capture(
        idempotency_key=f"{idempotency_key}:capture",
        auth_ref=hold.auth_ref,
        amount_minor=amount_minor,
    )
    if captured.approved:
        return ChargeOutcome(True, capture_id=captured.capture_id)
    reason = captured.decline_reason or DeclineReason.UNRECOGNIZED
    return ChargeOutcome(False, decline_reason=reason.value, advice_code=captured.advice_code)
