"""Proration: what an upgrade or a downgrade mid-period costs, exact to the cent.

Theory of operation. A plan change at instant *t* inside a period of length *P* with *R* left
(``0 ≤ R ≤ P``) is priced as two lines, each the **time-share** of one price:

- a credit for the unused time of the old plan: ``time_share(old, R, P)``;
- a charge for the remaining time of the new plan: ``time_share(new, R, P)``;

and the change's net is ``charge − credit``. :func:`time_share` is the one rounding rule:
``price × R / P`` rounded half up, in integers (no float, no Decimal). Because each line is
rounded on its own and the net is their difference, changing plan and changing back at the same
instant nets exactly zero; a change at the period's start credits and charges the whole prices;
one at its end, nothing.

The net is not charged at once: it is added to the subscription's pending adjustment and billed
(or credited) on the next renewal's invoice as these two lines — as subscription-billing systems
do by default. A credit larger than the next period's price carries on to the period after.
"""

from __future__ import annotations

from dataclasses import dataclass


def time_share(price_minor: int, remaining_ms: int, period_ms: int) -> int:
    """The part of ``price_minor`` for ``remaining_ms`` of a ``period_ms`` period, rounded half
    up (the one rounding rule of proration).

    Invariant: ``0 ≤ time_share(p, r, P) ≤ p``, monotonic in ``r``, ``time_share(p, P, P) == p``
    and ``time_share(p, 0, P) == 0``.
    """
    if price_minor < 0:
        raise ValueError(f"a price is not negative, got {price_minor}")
    if period_ms <= 0 or not 0 <= remaining_ms <= period_ms:
        raise ValueError(
            f"need 0 <= remaining ({remaining_ms}) <= period ({period_ms}), period > 0"
        )
    return (2 * price_minor * remaining_ms + period_ms) // (2 * period_ms)


@dataclass(frozen=True, slots=True)
class Proration:
    """The lines of one plan change."""

    credit_minor: int  # unused time of the old plan (to be credited)
    charge_minor: int  # remaining time of the new plan (to be charged)

    @property
    def net_minor(self) -> int:
        """What the change adds to the next invoice (negative: a credit)."""
        return self.charge_minor - self.credit_minor


def prorate(
    old_price_minor: int, new_price_minor: int, remaining_ms: int, period_ms: int
) -> Proration:
    """The proration of a change from ``old_price_minor`` to ``new_price_minor`` with
    ``remaining_ms`` of a ``period_ms`` period left."""
    return Proration(
        credit_minor=time_share(old_price_minor, remaining_ms, period_ms),
        charge_minor=time_share(new_price_minor, remaining_ms, period_ms),
    )
