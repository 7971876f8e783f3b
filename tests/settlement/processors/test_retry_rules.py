"""The one table of card-network retry rules."""

from __future__ import annotations

import pytest

from settlement.gateway import DeclineReason
from settlement.retry_rules import (
    RULES,
    VISA_REATTEMPTS_MAX,
    RetryCategory,
    may_cascade,
    may_retry,
    rule_for,
)

NEVER = [
    "lost_card",
    "stolen_card",
    "pickup_card",
    "fraudulent",
    "do_not_try_again",
    "revocation_of_authorization",
    "stop_payment_order",
    "restricted_card",
    "security_violation",
    "invalid_card",
    "unrecognized",
]


@pytest.mark.parametrize("reason", NEVER)
def test_a_will_never_approve_decline_is_never_retried_nor_cascaded(reason: str) -> None:
    assert not may_retry(reason)
    assert not may_cascade(reason)
    assert not DeclineReason(reason).retryable


def test_soft_declines_retry_within_visas_limit_and_cascade() -> None:
    assert may_retry("do_not_honor")
    assert may_cascade("do_not_honor")
    assert may_retry("insufficient_funds")
    assert not may_cascade("insufficient_funds")
    assert not may_retry("do_not_honor", attempts_in_window=VISA_REATTEMPTS_MAX)
    assert not may_retry("expired_card")


def test_every_reason_has_a_rule_and_unknown_ones_are_never() -> None:
    assert {r.value for r in DeclineReason} == set(RULES)
    assert rule_for("a_new_code").category is RetryCategory.NEVER


def test_mastercard_advice_codes_override_the_category() -> None:
    assert rule_for("do_not_honor", mastercard_advice="03").category is RetryCategory.NEVER
    assert rule_for("do_not_honor", mastercard_advice="21").category is RetryCategory.NEVER
    assert rule_for("do_not_honor", mastercard_advice="02").retryable
