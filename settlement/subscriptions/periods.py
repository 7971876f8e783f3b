"""Billing periods on the calendar: month, year or N days, anchored once.

A subscription's periods are counted from its **anchor** (the start of period 1, after any
trial). Period ``n`` starts at ``anchor + (n - 1) × length`` and ends where period ``n + 1``
starts, each computed from the anchor, never from the previous period: a membership anchored on
31 January renews on 28 (or 29) February, then on 31 March again — the short month never drifts
the later ones. Months and years are calendar months in UTC; days are 24 hours.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from settlement.ledger.times import at, ms

DAY_MS: Final = 86_400_000


class PeriodUnit(StrEnum):
    """The unit a plan's period is counted in."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"


def _add_months(instant: datetime, months: int) -> datetime:
    """``instant`` moved by ``months`` calendar months, the day clamped to the month's end."""
    total = instant.year * 12 + (instant.month - 1) + months
    year, month = divmod(total, 12)
    day = min(instant.day, calendar.monthrange(year, month + 1)[1])
    return instant.replace(year=year, month=month + 1, day=day)


def shift_ms(anchor_ms: int, unit: PeriodUnit, count: int) -> int:
    """``anchor_ms`` moved by ``count`` units (``count`` ≥ 0)."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    if unit is PeriodUnit.DAY:
        return anchor_ms + count * DAY_MS
    months = count if unit is PeriodUnit.MONTH else 12 * count
    return ms(_add_months(at(anchor_ms).astimezone(UTC), months))


def period_bounds(anchor_ms: int, unit: PeriodUnit, length: int, n: int) -> tuple[int, int]:
    """Start and end (exclusive) of period ``n`` ≥ 1 of a plan of ``length`` units."""
    if n < 1:
        raise ValueError(f"periods are numbered from 1, got {n}")
    return (
        shift_ms(anchor_ms, unit, (n - 1) * length),
        shift_ms(anchor_ms, unit, n * length),
    )
