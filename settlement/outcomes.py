"""Settlement's result codes and the typed results its scripts return.

Expected outcomes are values, not exceptions; each operation lists its codes in their order of
precedence (when several apply, the first listed is returned).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SettleCode(StrEnum):
    """Every business outcome of the settlement scripts. Values are stable."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    TAB_NOT_FOUND = "tab_not_found"
    TAB_NOT_SETTLING = "tab_not_settling"
    AMOUNT_MISMATCH = "amount_mismatch"
    BUSY = "busy"


class SettlementOutcome(StrEnum):
    """How a tab's settlement ended (the tab state follows from it, see the lifecycle)."""

    CAPTURED = "captured"  # settled: the accrued amount was captured
    DECLINED = "declined"  # failed: the capture was declined (collection follows)
    VOIDED = "voided"  # nothing accrued: the hold was released
    EXPIRED = "expired"  # the hold lapsed before a capture could be made (collection follows)


@dataclass(frozen=True, slots=True)
class BeginResult:
    """Outcome of recording the amount to settle (``begin_settlement.lua``).

    ``attempts`` counts the calls so far, this one included: above 1, an earlier attempt may
    have reached the gateway, so its outcome must be looked up rather than presumed absent.
    """

    code: SettleCode
    state: str = ""
    amount_minor: int = 0
    auth_ref: str = ""
    capture_before_ms: int = 0
    currency: str = ""
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class RecordResult:
    """Outcome of recording a settlement's outcome (``record_settlement.lua``).

    On ``duplicate`` the fields are the outcome recorded the first time.
    """

    code: SettleCode
    state: str = ""
    outcome: str = ""
    capture_id: str = ""
    outcome_at_ms: int = 0
