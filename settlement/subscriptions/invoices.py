"""Invoices of memberships: numbered and written by :mod:`settlement.ledger.invoices` (the
gap-free series are shared by every kind of invoice); this module keeps the names memberships
have always imported."""

from __future__ import annotations

from settlement.ledger.invoices import (
    SERIES_PREFIX_DEFAULT,
    InvoiceFacts,
    invoice_json,
    issue,
    lines_of,
    next_number,
    of_subscription,
    series_of,
)

__all__ = [
    "SERIES_PREFIX_DEFAULT",
    "InvoiceFacts",
    "invoice_json",
    "issue",
    "lines_of",
    "next_number",
    "of_subscription",
    "series_of",
]
