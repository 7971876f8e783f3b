"""Settlement's named bounds and timings; the server fills them from ``TIPMETER_SETTLE_*``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from settlement.errors import SettlementMisuse


class Checkpoint(StrEnum):
    """The points of one settlement between two durable steps, where a process may stop.

    A worker announces each to its ``on_checkpoint`` hook (none in production); the crash tests
    (``tests/settlement/crash_worker.py``) pass a hook that kills the process at one of them —
    a real ``kill -9`` at an exact place in the code, which no external timing can hit.
    """

    BEFORE_GATEWAY = "before_gateway"  # the amount is recorded; the gateway was not called
    AFTER_GATEWAY = "after_gateway"  # the gateway committed; the outcome is not recorded
    AFTER_RECORD = "after_record"  # the outcome is in Redis; the ledger write is not done
    AFTER_LEDGER = "after_ledger"  # the outcome is in the ledger; the tab is not retired
    #: Collection, not a settlement: a case change and its webhook's outbox row are committed;
    #: the relay has not run.
    COLLECTION_COMMITTED = "collection_committed"


#: The checkpoints one settlement passes, in order.
SETTLEMENT_CHECKPOINTS: tuple[Checkpoint, ...] = (
    Checkpoint.BEFORE_GATEWAY,
    Checkpoint.AFTER_GATEWAY,
    Checkpoint.AFTER_RECORD,
    Checkpoint.AFTER_LEDGER,
)


@dataclass(frozen=True, slots=True)
class SettlementConfig:
    """Everything the worker and the sweeper are tuned by. Times in ms unless named ``_s``."""

    #: An open tab on which nothing was spent for this long is settled (trigger ``idle``).
    idle_timeout_ms: int = 15 * 60_000
    #: An open tab whose hold expires within this margin is settled (``hold_expiring``).
    hold_margin_ms: int = 24 * 3_600_000
    #: An exhausted tab (less than the smallest tip left) is settled this long after it ran out
    #: unless the viewer raised the cap meanwhile (``cap_reached``).
    cap_grace_ms: int = 120_000
    #: The sweeper looks at every indexed tab at least this often.
    recheck_max_ms: int = 300_000
    #: A tab still settling this long after it was queued is queued again.
    requeue_after_ms: int = 60_000
    #: An index entry with no tab is dropped only when older than this (Tabs.open writes the
    #: entry just before the tab, so a young entry may point at a tab being created).
    orphan_grace_ms: int = 60_000
    #: A capture is not attempted when the hold expires within this time: the request might
    #: reach the processor after the expiry. The tab is then ``expired`` (collection follows).
    capture_guard_ms: int = 60_000
    #: A queue entry whose consumer has not acknowledged it for this long is reclaimed by
    #: another worker. Must exceed gateway_timeout_s, so a reclaimed entry's first worker is
    #: dead or has given up on its gateway call.
    claim_idle_ms: int = 60_000
    #: Deliveries of one queue entry before it is moved to the dead-letter stream.
    deliveries_max: int = 8
    #: Queue entries read per round, and tabs settled concurrently.
    read_count_max: int = 64
    concurrency_max: int = 16
    #: How long a read waits for new entries (below the Redis socket timeout).
    block_ms: int = 1_000
    #: How often the worker loop sweeps the tab index, and how many due entries a shard yields
    #: per sweep.
    sweep_interval_ms: int = 1_000
    sweep_batch_max: int = 512
    #: Bound on one gateway call, after which it counts as unavailable (retried, same key).
    gateway_timeout_s: float = 20.0
    #: Dead letters kept (approximate trimming).
    dead_letters_max: int = 100_000
    #: How long a terminal tab's Redis keys (tab, lines, shows) live once its outcome is in
    #: the ledger; readers use the ledger after that. A tip's idempotency record is a key of
    #: its own with its own lifetime (``metering.keys.OP_TTL_MS``), so a retry is answered
    #: ``duplicate`` whatever this is.
    retention_ms: int = 24 * 3_600_000

    def __post_init__(self) -> None:
        if self.claim_idle_ms <= self.gateway_timeout_s * 1_000:
            raise SettlementMisuse(
                "claim_idle_ms must exceed the gateway timeout, or an entry could be reclaimed "
                "while its first worker still waits for the gateway"
            )
        positive = (
            "idle_timeout_ms",
            "recheck_max_ms",
            "requeue_after_ms",
            "deliveries_max",
            "read_count_max",
            "concurrency_max",
            "block_ms",
            "sweep_interval_ms",
            "sweep_batch_max",
            "retention_ms",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettlementMisuse(f"{name} must be positive")
