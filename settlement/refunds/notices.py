"""Signed dispute notices from processors, read into one :class:`DisputeNotice`.

Two shapes are understood:

- **tipmeter's own** (what the sandbox sends, and what an adapter for a processor without
  webhooks of its own would post): ``{"id", "capture_id", "currency", "amount_minor",
  "fee_minor", "reason", "status", "created_ms"}``, signed ``Tipmeter-Signature`` with the
  processor's dispute secret (the scheme of :mod:`settlement.webhooks`);
- **Stripe's** ``charge.dispute.created`` / ``.updated`` / ``.closed`` / ``.funds_withdrawn``
  / ``.funds_reinstated`` events, signed ``Stripe-Signature`` (the same HMAC-SHA256 scheme,
  Stripe's webhook secret): the dispute object's ``payment_intent`` is the capture id the
  Stripe adapter records; its ``status`` ``won`` / ``lost`` closes the dispute, any other
  keeps it open; the fee is the sum of its balance transactions' fees.

:func:`read_notice` verifies the signature over the raw body before reading anything, and
raises :class:`~settlement.errors.InvalidSignature` or :class:`NoticeMalformed`.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from metering.money import is_currency
from settlement.refunds.errors import RefundError
from settlement.refunds.service import DisputeNotice
from settlement.webhooks import SIGNATURE_HEADER, sign, verify_signature

STRIPE_SIGNATURE_HEADER: Final = "Stripe-Signature"
#: Longest dispute notice read (Stripe's are a few kilobytes).
NOTICE_BYTES_MAX: Final = 65_536
_CLOSED: Final = frozenset({"won", "lost"})


class NoticeMalformed(RefundError):
    """A signed notice whose content is not a dispute notice (the peer's fault)."""


def sandbox_notice(
    *,
    dispute_id: str,
    capture_id: str,
    currency: str,
    amount_minor: int,
    fee_minor: int = 0,
    reason: str = "fraudulent",
    status: str = "open",
    created_ms: int = 0,
) -> bytes:
    """The body of a notice in tipmeter's own shape (what the sandbox raises)."""
    return orjson.dumps(
        {
            "id": dispute_id,
            "capture_id": capture_id,
            "currency": currency,
            "amount_minor": amount_minor,
            "fee_minor": fee_minor,
            "reason": reason,
            "status": status,
            "created_ms": created_ms,
        }
    )


def signed_headers(body: bytes, secret: str, now_s: int, *, stripe: bool = False) -> dict[str, str]:
    """The signature header a processor sends with ``body``."""
    name = STRIPE_SIGNATURE_HEADER if stripe else SIGNATURE_HEADER
    return {name: sign(body, secret, now_s), "Content-Type": "application/json"}


def read_notice(
    processor: str, body: bytes, headers: dict[str, str], secret: str, *, now_s: int
) -> DisputeNotice:
    """Verify and read one notice of ``processor`` (its shape is told by its header)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    stripe = STRIPE_SIGNATURE_HEADER.lower() in lowered
    header = lowered.get(
        STRIPE_SIGNATURE_HEADER.lower() if stripe else SIGNATURE_HEADER.lower(), ""
    )
    verify_signature(body, header, secret, now_s=now_s)
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NoticeMalformed("the notice is not JSON") from None
    if not isinstance(event, dict):
        raise NoticeMalformed("the notice must be a JSON object")
    return _stripe(processor, event) if stripe else _own(processor, event)


def _text(value: Any, name: str) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= 255):
        raise NoticeMalformed(f"{name} must be a non-empty string")
    return value


def _amount(value: Any, name: str, *, positive: bool) -> int:
    if type(value) is not int or value < (1 if positive else 0):
        raise NoticeMalformed(f"{name} must be an integer number of minor units")
    return value


def _own(processor: str, event: dict[str, Any]) -> DisputeNotice:
    status = event.get("status")
    if status not in ("open", "won", "lost"):
        raise NoticeMalformed("status must be open, won or lost")
    currency = event.get("currency")
    if not is_currency(currency):
        raise NoticeMalformed("currency must be an accepted ISO-4217 code")
    created = event.get("created_ms", 0)
    return DisputeNotice(
        processor=processor,
        dispute_id=_text(event.get("id"), "id"),
        capture_id=_text(event.get("capture_id"), "capture_id"),
        currency=currency,
        amount_minor=_amount(event.get("amount_minor"), "amount_minor", positive=True),
        fee_minor=_amount(event.get("fee_minor", 0), "fee_minor", positive=False),
        reason=str(event.get("reason", ""))[:255],
        status=status,
        at_ms=created if type(created) is int and created > 0 else 0,
    )


def _stripe(processor: str, event: dict[str, Any]) -> DisputeNotice:
    kind = event.get("type")
    if not (isinstance(kind, str) and kind.startswith("charge.dispute.")):
        raise NoticeMalformed(f"not a dispute event: {kind!r}")
    data = event.get("data")
    dispute = data.get("object") if isinstance(data, dict) else None
    if not isinstance(dispute, dict):
        raise NoticeMalformed("data.object must be the dispute")
    currency = str(dispute.get("currency", "")).upper()
    if not is_currency(currency):
        raise NoticeMalformed("the dispute's currency is not accepted")
    fees = dispute.get("balance_transactions") or []
    fee = sum(
        t["fee"] for t in fees if isinstance(t, dict) and type(t.get("fee")) is int and t["fee"] > 0
    )
    status = dispute.get("status")
    created = dispute.get("created")
    return DisputeNotice(
        processor=processor,
        dispute_id=_text(dispute.get("id"), "id"),
        capture_id=_text(dispute.get("payment_intent"), "payment_intent"),
        currency=currency,
        amount_minor=_amount(dispute.get("amount"), "amount", positive=True),
        fee_minor=fee,
        reason=str(dispute.get("reason", ""))[:255],
        status=status if status in _CLOSED else "open",
        at_ms=created * 1000 if type(created) is int and created > 0 else 0,
    )
