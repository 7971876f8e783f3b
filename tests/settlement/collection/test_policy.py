"""The retry schedule under the card-network rules (settlement.retry_rules, the one table)."""

from __future__ import annotations

import pytest

from settlement import retry_rules
from settlement.collection.policy import RetryDecision, next_retry
from settlement.retry_rules import VisaCategory

DAY_MS = 24 * 3_600_000
NEVER = [
    "lost_card",
    "stolen_card",
    "pickup_card",
    "invalid_card",
    "fraudulent",
    "do_not_try_again",
    "card_not_active",
    "revocation_of_authorization",
]


@pytest.mark.parametrize("reason", NEVER)
def test_a_never_approve_decline_is_never_retried(reason: str) -> None:
    decision = next_retry(
        reason=reason, advice_code="", retries_done=0, last_attempt_ms=0, card_retries_ms=()
    )
    assert decision.at_ms is None
    assert decision.why_not == "never_retry"
    assert retry_rules.visa_category(reason) is VisaCategory.ISSUER_WILL_NEVER_APPROVE


@pytest.mark.parametrize("advice", ["03", "21"])
def test_mastercard_advice_03_and_21_forbid_a_retry_of_a_soft_decline(advice: str) -> None:
    decision = next_retry(
        reason="insufficient_funds",
        advice_code=advice,
        retries_done=0,
        last_attempt_ms=0,
        card_retries_ms=(),
    )
    assert decision.at_ms is None


@pytest.mark.parametrize(
    ("advice", "wait_ms"),
    [
        ("24", 3_600_000),
        ("25", DAY_MS),
        ("26", 2 * DAY_MS),
        ("27", 4 * DAY_MS),
        ("28", 6 * DAY_MS),
        ("29", 8 * DAY_MS),
        ("30", 10 * DAY_MS),
    ],
)
def test_mastercard_advice_24_to_30_wait_as_they_say(advice: str, wait_ms: int) -> None:
    schedule = (1_000,)
    decision = next_retry(
        reason="do_not_honor",
        advice_code=advice,
        retries_done=0,
        last_attempt_ms=5_000,
        card_retries_ms=(),
        schedule_ms=schedule,
    )
    assert decision.at_ms == 5_000 + wait_ms


def test_a_soft_decline_follows_the_schedule_then_stops() -> None:
    schedule = (DAY_MS, 2 * DAY_MS)

    def after(retries_done: int, last_attempt_ms: int) -> RetryDecision:
        return next_retry(
            reason="insufficient_funds",
            advice_code="",
            retries_done=retries_done,
            last_attempt_ms=last_attempt_ms,
            card_retries_ms=(),
            schedule_ms=schedule,
        )

    first, second, third = after(0, 0), after(1, DAY_MS), after(2, 3 * DAY_MS)
    assert (first.at_ms, second.at_ms, third.at_ms) == (DAY_MS, 3 * DAY_MS, None)
    assert third.why_not == "schedule_done"


def test_fifteen_retries_of_a_card_in_thirty_days_push_the_next_past_the_window() -> None:
    window = retry_rules.VISA_REATTEMPT_WINDOW_MS
    retries = [i * 1_000 for i in range(retry_rules.VISA_REATTEMPTS_MAX)]
    decision = next_retry(
        reason="try_again_later",
        advice_code="",
        retries_done=0,
        last_attempt_ms=20_000,
        card_retries_ms=retries,
        schedule_ms=(1,),
    )
    assert decision.at_ms == retries[0] + window + 1


def test_try_later_and_data_quality_declines_are_visa_categories_2_and_3() -> None:
    assert retry_rules.visa_category("insufficient_funds") is VisaCategory.ISSUER_CANNOT_APPROVE_NOW
    assert retry_rules.visa_category("expired_card") is VisaCategory.DATA_QUALITY
    # A data-quality decline is not retried with the same card data (the link asks for a card).
    assert not retry_rules.may_retry("expired_card")
    assert retry_rules.may_retry("insufficient_funds", attempts_in_window=14)
    assert not retry_rules.may_retry("insufficient_funds", attempts_in_window=15)


def test_no_retry_is_scheduled_past_the_horizon() -> None:
    decision = next_retry(
        reason="insufficient_funds",
        advice_code="",
        retries_done=0,
        last_attempt_ms=0,
        card_retries_ms=(),
        schedule_ms=(2 * DAY_MS,),
        horizon_ms=DAY_MS,
    )
    assert (decision.at_ms, decision.why_not) == (None, "horizon")
