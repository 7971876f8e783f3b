"""The subscriptions package's settings, each bound named."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from settlement.subscriptions.invoices import SERIES_PREFIX_DEFAULT
from settlement.subscriptions.tax import TAX_RATES_BP

#: How long a worker's claim on a subscription lasts: another worker leaves the row alone for
#: that long, and then runs the claimed attempt again with the same key (a dead worker's
#: charge is finished by another, never doubled). Longer than one processor call may take.
LEASE_MS_DEFAULT: Final = 120_000
#: Subscriptions claimed per transaction.
CLAIM_BATCH_MAX_DEFAULT: Final = 50
#: Claim rounds per :meth:`Renewals.run_due` call at most (the rest waits for the next call).
ROUNDS_MAX_DEFAULT: Final = 100
#: Wait before an attempt whose answer was lost is run again (same key).
UNKNOWN_RETRY_MS_DEFAULT: Final = 60_000
#: Charges sent to processors at once by one worker.
CONCURRENCY_MAX_DEFAULT: Final = 8
#: A customer's subscriptions listed at most.
LIST_MAX_DEFAULT: Final = 100


@dataclass(frozen=True, slots=True)
class SubscriptionsConfig:
    """How renewals are claimed and charged, and how invoices are numbered and taxed."""

    lease_ms: int = LEASE_MS_DEFAULT
    claim_batch_max: int = CLAIM_BATCH_MAX_DEFAULT
    rounds_max: int = ROUNDS_MAX_DEFAULT
    unknown_retry_ms: int = UNKNOWN_RETRY_MS_DEFAULT
    concurrency_max: int = CONCURRENCY_MAX_DEFAULT
    invoice_series_prefix: str = SERIES_PREFIX_DEFAULT
    tax_rates_bp: Mapping[str, int] = field(default_factory=lambda: dict(TAX_RATES_BP))
