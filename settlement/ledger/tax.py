"""Tax on invoice lines: a rate per country in basis points, prices inclusive or exclusive.

Each line is taxed on its own by :func:`tax_line`, the one rounding rule of tax: half away from
zero (a credit line's tax mirrors the charge line's exactly). An invoice's net, tax and total are
the sums of its lines', so ``net + tax == total`` holds per line and per invoice by construction
(and the database checks it again).

The rates are the standard VAT rates of :data:`TAX_RATES_BP` (a deployment replaces the table;
a country not listed is taxed at 0). Which country applies is the customer's, recorded on the
subscription with the evidence it was decided from (billing address, card country, IP).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from metering.money import BP_ONE

#: Standard VAT rates in basis points by ISO 3166 alpha-2 country (as of 2026).
TAX_RATES_BP: Final[Mapping[str, int]] = {
    "AT": 2000,
    "BE": 2100,
    "DE": 1900,
    "ES": 2100,
    "FR": 2000,
    "IE": 2300,
    "IT": 2200,
    "LT": 2100,
    "NL": 2100,
    "PL": 2300,
    "GB": 2000,
}


def rate_bp(country: str, rates: Mapping[str, int] = TAX_RATES_BP) -> int:
    """The tax rate of ``country`` in basis points (0 where none is listed)."""
    return rates.get(country.upper(), 0)


def _div_half_away(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half away from zero (``denominator`` > 0)."""
    quotient = (2 * abs(numerator) + denominator) // (2 * denominator)
    return quotient if numerator >= 0 else -quotient


@dataclass(frozen=True, slots=True)
class TaxedLine:
    """One line's net, tax and total (``net + tax == total``)."""

    net_minor: int
    tax_minor: int
    total_minor: int
    rate_bp: int


def tax_line(amount_minor: int, rate: int, *, inclusive: bool) -> TaxedLine:
    """Tax one line of ``amount_minor`` at ``rate`` basis points (the one rounding rule).

    ``inclusive``: the amount is the gross price and the tax is taken out of it
    (``tax = amount × rate / (1 + rate)``); otherwise the amount is net and the tax is added.
    Either way the tax is rounded once, half away from zero, and ``net + tax == total``.
    """
    if not 0 <= rate <= BP_ONE:
        raise ValueError(f"a tax rate is within 0..{BP_ONE} bp, got {rate}")
    if inclusive:
        tax = _div_half_away(amount_minor * rate, BP_ONE + rate)
        return TaxedLine(amount_minor - tax, tax, amount_minor, rate)
    tax = _div_half_away(amount_minor * rate, BP_ONE)
    return TaxedLine(amount_minor, tax, amount_minor + tax, rate)
