"""Tax on invoice lines: the one rule lives in :mod:`settlement.ledger.tax` (Post Pay invoices
and credit notes use it too); this module keeps the names memberships have always imported."""

from __future__ import annotations

from settlement.ledger.tax import TAX_RATES_BP, TaxedLine, rate_bp, tax_line

__all__ = ["TAX_RATES_BP", "TaxedLine", "rate_bp", "tax_line"]
