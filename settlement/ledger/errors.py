"""The ledger's exceptions (see :mod:`settlement.ledger`)."""

from __future__ import annotations

from settlement.errors import SettlementError


class LedgerError(SettlementError):
    """Root of every exception the ledger raises."""


class LedgerUnavailable(LedgerError):
    """PostgreSQL cannot be reached (or timed out): retry later; nothing was half-written,
    because every write is one transaction."""


class LedgerMismatch(LedgerError):
    """A write disagrees with what the ledger already holds for the same id (the same
    settlement recorded with another amount): a bug, never retried blindly."""
