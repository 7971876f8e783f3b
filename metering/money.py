"""Money: integer minor units with an ISO-4217 currency, and the one rounding rule.

Money never touches a float. Amounts are Python ``int`` values, checked with :func:`is_amount`
before they reach Redis, and every amount the product handles stays below
:data:`AMOUNT_LIMIT_MINOR` (2**53) so that Lua (whose numbers are doubles) computes on it
exactly. Products that appear in the rounding rules (amount × basis points, rate × seconds) are
kept below 2**53 by the bounds :data:`CAP_HARD_MAX_MINOR` and :data:`RATE_HARD_MAX_MINOR`.

The rounding rules live here and nowhere else; the Lua scripts implement the same formulas and
the tests check that both agree:

- :func:`share_minor` — a model's share of an amount: ``floor(amount × bp / 10000)``; the
  platform keeps the remainder, so ``share + platform == amount`` exactly.
- :func:`prorate_minor` — the price of ``n`` seconds at a per-minute rate:
  ``floor(rate × n / 60)``. It is applied to the whole elapsed time, never summed per second, so
  no rounding error accumulates; each second is billed as ``prorate(n) - prorate(n - 1)``. The
  floor favours the customer: a partial minor unit is never charged.
- :func:`discounted_minor` — what a member pays for ``amount`` with a plan's discount of ``bp``
  basis points: ``amount - floor(amount × bp / 10000)``. The discount is rounded down (the
  member pays the rest, never a fraction less than the discount allows), the same floor as a
  share. A session applies it to its per-minute rate once, at its start, and then prorates the
  discounted rate over the seconds it pays for (docs/subscriptions.md, "Allowances").
"""

from __future__ import annotations

from typing import Final, TypeGuard

#: Every amount on the wire, in Lua and in Redis is an integer strictly below this bound.
AMOUNT_LIMIT_MINOR: Final = 2**53

#: Basis points in one whole (100.00 %).
BP_ONE: Final = 10_000

#: No cap may exceed this, whatever the configuration says: it keeps ``cap × BP_ONE`` below
#: 2**53, so share arithmetic in Lua is exact. (9·10**11 minor units is 9 billion dollars.)
CAP_HARD_MAX_MINOR: Final = 900_000_000_000

#: No per-minute rate may exceed this: with sessions bounded by a tab's cap, ``rate × seconds``
#: stays exact in Lua for any session shorter than about 2.8 years.
RATE_HARD_MAX_MINOR: Final = 1_000_000

#: ISO-4217 codes the product accepts, with their number of minor-unit digits. Amounts are
#: always in minor units, so the exponent only matters for display.
CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "CAD": 2,
    "AUD": 2,
    "CHF": 2,
    "SEK": 2,
    "NOK": 2,
    "DKK": 2,
    "PLN": 2,
    "BRL": 2,
    "MXN": 2,
    "JPY": 0,
}


def is_amount(value: object) -> TypeGuard[int]:
    """Tell whether ``value`` is a valid amount in minor units: an ``int`` in ``[0, 2**53)``.

    ``bool`` is an ``int`` subclass in Python and is refused; so are floats (even integral
    ones), strings, negatives and anything at or beyond 2**53.
    """
    return type(value) is int and 0 <= value < AMOUNT_LIMIT_MINOR


def is_positive_amount(value: object) -> TypeGuard[int]:
    """Tell whether ``value`` is a valid amount (see :func:`is_amount`) greater than zero."""
    return is_amount(value) and value > 0


def is_currency(value: object) -> TypeGuard[str]:
    """Tell whether ``value`` is an ISO-4217 code this product accepts."""
    return type(value) is str and value in CURRENCY_EXPONENTS


def share_minor(amount_minor: int, payout_bp: int) -> int:
    """Return a model's share of ``amount_minor`` at ``payout_bp`` basis points, rounded down.

    Invariant: ``0 <= share_minor(a, bp) <= a`` and the platform's part is ``a - share``, so
    model shares plus the platform share always equal the amount exactly.
    """
    if not (0 <= payout_bp <= BP_ONE):
        raise ValueError(f"payout_bp must be within 0..{BP_ONE}, got {payout_bp}")
    return amount_minor * payout_bp // BP_ONE


def prorate_minor(rate_per_minute_minor: int, seconds: int) -> int:
    """Return the price of ``seconds`` at ``rate_per_minute_minor``, rounded down once.

    Invariant: the function is monotonic in ``seconds``, and ``prorate(60·m) == rate·m``
    exactly, so a show billed per second costs exactly the per-minute rate on each full minute.
    """
    if seconds < 0:
        raise ValueError(f"seconds must not be negative, got {seconds}")
    return rate_per_minute_minor * seconds // 60


def discounted_minor(amount_minor: int, discount_bp: int) -> int:
    """Return what is charged for ``amount_minor`` with a discount of ``discount_bp`` basis
    points: the discount ``floor(amount × bp / 10000)`` is taken off, the rest is charged.

    Invariant: ``0 <= discounted_minor(a, bp) <= a``; it is monotonic in ``a``; at 0 bp it is
    ``a`` and at 10,000 bp it is 0.
    """
    if not (0 <= discount_bp <= BP_ONE):
        raise ValueError(f"discount_bp must be within 0..{BP_ONE}, got {discount_bp}")
    return amount_minor - amount_minor * discount_bp // BP_ONE


def format_minor(amount_minor: int, currency: str) -> str:
    """Render an amount for people (``1234, "USD"`` → ``"12.34 USD"``); never parse it back."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    if exponent == 0:
        return f"{amount_minor} {currency}"
    whole, part = divmod(amount_minor, 10**exponent)
    return f"{whole}.{part:0{exponent}d} {currency}"
