"""The refunds package's exceptions (see :mod:`settlement.refunds`)."""

from __future__ import annotations

from settlement.errors import SettlementError


class RefundError(SettlementError):
    """Root of every exception the refunds package raises."""


class RefundNotFound(RefundError):
    """No such refund, dispute, tab or payment."""


class RefundIdReused(RefundError):
    """A client-minted refund id (or a processor's dispute id) came again with other
    parameters: never silently answered with the first request's result."""


class NotRefundable(RefundError):
    """The tab has no capture to refund (not settled, declined, voided or expired)."""
