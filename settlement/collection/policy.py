"""When a collection case's card may be tried again: the retry schedule under the card rules.

Every answer comes from :mod:`settlement.retry_rules` (the one table of card-network rules);
this module only adds the merchant's schedule. A retry is allowed when the decline's category
is "later" (Visa category 2; never category 1, and not category 3 with the same card data),
when the card has had fewer than :data:`~settlement.retry_rules.VISA_REATTEMPTS_MAX` retries in
the last :data:`~settlement.retry_rules.VISA_REATTEMPT_WINDOW_MS`, no sooner than a Mastercard
advice code says, and while the schedule has steps left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from settlement import retry_rules

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS

#: No automatic retry later than this after a case opened (then the link, or a write-off).
RETRY_HORIZON_MS_DEFAULT: Final = 30 * _DAY_MS

#: Wait before retry n (1-based) after the previous attempt (or the case's opening).
RETRY_SCHEDULE_MS_DEFAULT: Final = (
    1 * _DAY_MS,
    2 * _DAY_MS,
    3 * _DAY_MS,
    4 * _DAY_MS,
    5 * _DAY_MS,
    7 * _DAY_MS,
)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """The next retry's time (Unix ms), or ``None`` with the reason no retry follows."""

    at_ms: int | None
    why_not: str = ""


def next_retry(
    *,
    reason: str,
    advice_code: str,
    retries_done: int,
    last_attempt_ms: int,
    card_retries_ms: Sequence[int],
    schedule_ms: Sequence[int] = RETRY_SCHEDULE_MS_DEFAULT,
    horizon_ms: int | None = None,
) -> RetryDecision:
    """When the card on file may be tried next.

    ``card_retries_ms`` are the times of this card's automatic retries (every case) in the last
    :data:`~settlement.retry_rules.VISA_REATTEMPT_WINDOW_MS` before ``last_attempt_ms``; when
    the limit is reached the retry waits until the oldest of them leaves the window. No retry
    is scheduled after ``horizon_ms`` (the case's retry horizon: it ends by a rule, not by
    waiting for ever).
    """
    if not retry_rules.rule_for(reason, mastercard_advice=advice_code).retryable:
        return RetryDecision(None, "never_retry")
    if retries_done >= len(schedule_ms):
        return RetryDecision(None, "schedule_done")
    at_ms = last_attempt_ms + max(
        schedule_ms[retries_done], retry_rules.advice_wait_ms(advice_code)
    )
    window_ms = retry_rules.VISA_REATTEMPT_WINDOW_MS
    recent = sorted(t for t in card_retries_ms if t > at_ms - window_ms)
    while len(recent) >= retry_rules.VISA_REATTEMPTS_MAX:
        # The (limit)-th newest attempt must leave the window before one more is allowed.
        at_ms = recent[len(recent) - retry_rules.VISA_REATTEMPTS_MAX] + window_ms + 1
        recent = [t for t in recent if t > at_ms - window_ms]
    if horizon_ms is not None and at_ms > horizon_ms:
        return RetryDecision(None, "horizon")
    return RetryDecision(at_ms)


def retry_table_markdown() -> str:
    """The card-network rules as the docs show them (``docs/collection.md``; a test keeps the
    page current): each decline reason's category, Visa category and whether a case retries it,
    then each Mastercard advice code's category and wait."""
    rows = [
        "| decline reason | category | Visa category | automatic retry |",
        "| --- | --- | --- | --- |",
    ]
    for reason, rule in {**retry_rules.RULES, **retry_rules.NOT_DECLINES}.items():
        visa = int(retry_rules.visa_category(reason))
        retried = "yes" if rule.retryable else "no"
        rows.append(f"| `{reason}` | {rule.category} | {visa} | {retried} |")
    rows += ["", "| Mastercard advice code | category | wait before the next attempt |"]
    rows.append("| --- | --- | --- |")
    for code, category in retry_rules.MASTERCARD_ADVICE.items():
        wait_ms = retry_rules.advice_wait_ms(code)
        wait = _duration(wait_ms) if wait_ms else "—"
        rows.append(f"| `{code}` | {category} | {wait} |")
    return "\n".join(rows) + "\n"


def _duration(duration_ms: int) -> str:
    if duration_ms % _DAY_MS == 0:
        days = duration_ms // _DAY_MS
        return f"{days} day" + ("s" if days != 1 else "")
    hours = duration_ms // _HOUR_MS
    return f"{hours} hour" + ("s" if hours != 1 else "")
