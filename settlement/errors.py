"""The exception tree of settlement (see :mod:`settlement`'s docstring).

Gateway exceptions (:class:`settlement.gateway.GatewayError`) have their own root, because
adapters for other processors raise them too; they are infrastructure and request errors of the
processor, not of this package.
"""

from __future__ import annotations


class SettlementError(Exception):
    """Root of every exception the settlement package raises (gateway errors aside)."""


class SettlementMisuse(SettlementError, ValueError):
    """The caller passed something malformed (a bad setting, a bound out of range …)."""


class StatementMismatch(SettlementError):
    """A tab's lines do not add up to its accrued amount: the money core broke an invariant.

    Never expected; raised instead of settling an amount that the statement cannot explain.
    """


class InvalidSignature(SettlementError):
    """A webhook delivery failed verification: bad header, wrong signature, or too old."""
