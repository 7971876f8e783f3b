"""The subscriptions package's exceptions (one root; business outcomes are result codes)."""

from __future__ import annotations

from settlement.errors import SettlementError


class SubscriptionError(SettlementError):
    """Root of every exception :mod:`settlement.subscriptions` raises."""


class PlanInvalid(SubscriptionError, ValueError):
    """A plan's definition breaks a rule; the message says which, and what to do instead."""
