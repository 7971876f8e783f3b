"""A token bucket: ``rate_per_s`` on average, bursts up to ``capacity``."""

from __future__ import annotations


class TokenBucket:
    """Refills continuously; :meth:`take` spends one token or says how long to wait for one."""

    __slots__ = ("capacity", "rate_per_s", "tokens", "updated_s")

    def __init__(self, rate_per_s: float, capacity: float, now_s: float) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("a token bucket needs a positive rate and room for one token")
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self.tokens = capacity
        self.updated_s = now_s

    def take(self, now_s: float) -> float:
        """Spend one token at ``now_s`` (monotonic seconds); return 0.0, or the seconds until a
        token would be available (nothing is spent then)."""
        elapsed = max(now_s - self.updated_s, 0.0)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_s)
        self.updated_s = now_s
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s
