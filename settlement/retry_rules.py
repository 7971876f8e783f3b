"""Card-network retry rules: one table, for every place that may try a card again.

Settlement (whether a declined capture may be retried), collection (when a payment link may
try the card again) and processor cascading (whether a declined hold may be tried at another
processor) all read this table, so a decline is never retried in one place and refused in
another. The rules follow the card networks' published reattempt programmes:

- a decline in the "will never approve" category (lost, stolen, pick-up card, fraud, closed or
  invalid account, revoked authorization, stop-payment order, "do not try again") is never
  retried, by any processor: Visa counts every reattempt of such a decline against the
  merchant, and Mastercard's merchant advice codes ``03`` and ``21`` forbid it;
- a decline that may approve later (insufficient funds, do-not-honor, a processing error,
  "try again later") may be retried, at most :data:`VISA_REATTEMPTS_MAX` times in
  :data:`VISA_REATTEMPT_WINDOW_MS` per card and merchant (Visa's rule, used for every network);
- a decline that needs new card data (expired card) is not retried with the same data;
- a Mastercard merchant advice code ``24``–``30`` names the wait before the next attempt
  (1 hour, 24 hours, 2, 4, 6, 8 or 10 days: :data:`MASTERCARD_ADVICE_WAIT_MS`).

Visa groups the same declines in three categories (:func:`visa_category`): 1 "will never
approve", 2 "cannot approve now", 3 "data quality"; 2 and 3 share the reattempt limit.

Only a *soft* decline may cascade to another processor when a hold is placed: a hard one
describes the card, not the processor, and another processor would only be declined again
(and the attempt counts against the merchant at the network).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from settlement.gateway import DeclineReason

#: Visa's reattempt limit for one card and merchant (every network is held to it here).
VISA_REATTEMPTS_MAX: Final = 15
#: The window of that limit: 30 days.
VISA_REATTEMPT_WINDOW_MS: Final = 30 * 24 * 3_600_000


class RetryCategory(StrEnum):
    """What the networks allow after a decline."""

    NEVER = "never"  # will never approve: no retry, anywhere, ever
    UPDATE_CARD = "update_card"  # not with the same card data; new data may approve
    LATER = "later"  # may approve later: retry within the reattempt limits


@dataclass(frozen=True, slots=True)
class RetryRule:
    """The rule for one decline reason."""

    category: RetryCategory
    #: Whether another processor may be tried at once when a hold gets this decline.
    cascades: bool

    @property
    def retryable(self) -> bool:
        """Whether the same card may be tried again later."""
        return self.category is RetryCategory.LATER


_NEVER: Final = RetryRule(RetryCategory.NEVER, cascades=False)
_UPDATE: Final = RetryRule(RetryCategory.UPDATE_CARD, cascades=False)
_LATER_NO_CASCADE: Final = RetryRule(RetryCategory.LATER, cascades=False)
_SOFT: Final = RetryRule(RetryCategory.LATER, cascades=True)

#: The table, by :class:`settlement.gateway.DeclineReason` value. A reason missing here is
#: treated as "never" (:func:`rule_for`): an unknown decline is not retried against the rules.
RULES: Final[Mapping[str, RetryRule]] = {
    "insufficient_funds": _LATER_NO_CASCADE,  # the same card has no more funds elsewhere
    "do_not_honor": _SOFT,
    "processing_error": _SOFT,
    "try_again_later": _SOFT,
    "card_not_supported": _SOFT,  # this processor's acquirer refuses it; another may not
    "authentication_required": _UPDATE,  # 3-D Secure failed or is needed: the customer acts
    "expired_card": _UPDATE,
    "invalid_card": _NEVER,
    "card_not_active": _NEVER,
    "lost_card": _NEVER,
    "stolen_card": _NEVER,
    "pickup_card": _NEVER,
    "fraudulent": _NEVER,
    "do_not_try_again": _NEVER,
    "revocation_of_authorization": _NEVER,
    "stop_payment_order": _NEVER,
    "restricted_card": _NEVER,
    "security_violation": _NEVER,
    "unrecognized": _NEVER,
}

#: Reasons to charge a card again that are not declines (kept apart so that :data:`RULES`
#: stays exactly the decline reasons). ``hold_expired``: the hold lapsed before its capture;
#: charging the card on file again is a new authorization, which may approve, and it counts
#: against the reattempt limit all the same.
NOT_DECLINES: Final[Mapping[str, RetryRule]] = {"hold_expired": _LATER_NO_CASCADE}

#: Mastercard merchant advice codes (MAC) and the category each imposes, whatever the reason.
MASTERCARD_ADVICE: Final[Mapping[str, RetryCategory]] = {
    "01": RetryCategory.UPDATE_CARD,  # new account information available
    "02": RetryCategory.LATER,  # cannot approve at this time, try again later
    "03": RetryCategory.NEVER,  # do not try again
    "21": RetryCategory.NEVER,  # payment cancellation (stop payment): do not try again
    "24": RetryCategory.LATER,  # retry after 1 hour
    "25": RetryCategory.LATER,  # retry after 24 hours
    "26": RetryCategory.LATER,  # retry after 2 days
    "27": RetryCategory.LATER,  # retry after 4 days
    "28": RetryCategory.LATER,  # retry after 6 days
    "29": RetryCategory.LATER,  # retry after 8 days
    "30": RetryCategory.LATER,  # retry after 10 days
}

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 24 * _HOUR_MS

#: The wait a Mastercard advice code imposes before the next attempt on the card: no retry
#: may come sooner, whatever the retry schedule says.
MASTERCARD_ADVICE_WAIT_MS: Final[Mapping[str, int]] = {
    "24": _HOUR_MS,
    "25": _DAY_MS,
    "26": 2 * _DAY_MS,
    "27": 4 * _DAY_MS,
    "28": 6 * _DAY_MS,
    "29": 8 * _DAY_MS,
    "30": 10 * _DAY_MS,
}


class VisaCategory(IntEnum):
    """Visa's decline categories: 1 never approves, 2 may approve later, 3 needs better data.

    Categories 2 and 3 are both held to :data:`VISA_REATTEMPTS_MAX` reattempts in
    :data:`VISA_REATTEMPT_WINDOW_MS` per card; category 1 is never reattempted.
    """

    ISSUER_WILL_NEVER_APPROVE = 1
    ISSUER_CANNOT_APPROVE_NOW = 2
    DATA_QUALITY = 3


_VISA_OF: Final[Mapping[RetryCategory, VisaCategory]] = {
    RetryCategory.NEVER: VisaCategory.ISSUER_WILL_NEVER_APPROVE,
    RetryCategory.LATER: VisaCategory.ISSUER_CANNOT_APPROVE_NOW,
    RetryCategory.UPDATE_CARD: VisaCategory.DATA_QUALITY,
}


def visa_category(reason: DeclineReason | str, *, mastercard_advice: str = "") -> VisaCategory:
    """The Visa decline category of ``reason`` (after any Mastercard advice code)."""
    return _VISA_OF[rule_for(reason, mastercard_advice=mastercard_advice).category]


def advice_wait_ms(mastercard_advice: str) -> int:
    """How long a Mastercard advice code says to wait before trying the card again (0: none)."""
    return MASTERCARD_ADVICE_WAIT_MS.get(mastercard_advice, 0)


def rule_for(reason: DeclineReason | str, *, mastercard_advice: str = "") -> RetryRule:
    """The rule for ``reason``; a Mastercard advice code, when given, overrides the category.

    Unknown reasons are "never": retrying a decline nobody classified risks the network's
    penalties, while not retrying only costs a payment link.
    """
    rule = RULES.get(str(reason)) or NOT_DECLINES.get(str(reason), _NEVER)
    advised = MASTERCARD_ADVICE.get(mastercard_advice)
    if advised is not None and advised is not rule.category:
        return RetryRule(advised, cascades=rule.cascades and advised is RetryCategory.LATER)
    return rule


def may_retry(
    reason: DeclineReason | str, *, attempts_in_window: int = 0, mastercard_advice: str = ""
) -> bool:
    """Whether the card may be tried again after ``reason``, given the reattempts already made
    in the current :data:`VISA_REATTEMPT_WINDOW_MS`."""
    rule = rule_for(reason, mastercard_advice=mastercard_advice)
    return rule.retryable and attempts_in_window < VISA_REATTEMPTS_MAX


def may_cascade(reason: DeclineReason | str) -> bool:
    """Whether a hold declined with ``reason`` may be tried at the next eligible processor."""
    return rule_for(reason).cascades
