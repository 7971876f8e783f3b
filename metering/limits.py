"""Named bounds of the money core. Every amount, count and lifetime has one.

The server fills :class:`Limits` from its settings (``TIPMETER_*`` variables); the defaults
here are the product's defaults. Construction checks that the bounds are consistent and that
they keep Lua's arithmetic exact (see :mod:`metering.money`).
"""

from __future__ import annotations

from dataclasses import dataclass

from metering.keys import OP_TTL_MS
from metering.money import BP_ONE, CAP_HARD_MAX_MINOR, RATE_HARD_MAX_MINOR


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what the money core accepts and keeps."""

    #: Smallest and largest single tip, in minor units.
    tip_min_minor: int = 1
    tip_max_minor: int = 100_000
    #: Smallest cap a tab may be opened with, and the largest any tab may reach.
    cap_min_minor: int = 100
    cap_max_minor: int = 1_000_000
    #: Itemized lines one tab may hold (tips plus sessions).
    tab_lines_max: int = 10_000
    #: Room events a customer may have waiting to be relayed before tips answer ``busy``.
    outbox_max: int = 10_000
    #: Events kept in a room's stream (approximate, trimmed by Redis in whole nodes).
    room_events_max: int = 10_000
    #: How long, and how many, relayed event keys a room remembers to refuse a second relay.
    relayed_window_ms: int = OP_TTL_MS
    relayed_max: int = 100_000
    #: How long an applied tip's result is kept for retries with the same id.
    op_ttl_ms: int = OP_TTL_MS
    #: A model's share of each tip when the room's profile names none (basis points).
    payout_bp_default: int = 6_000
    #: Lengths of the free-text fields of a tip, in characters.
    message_chars_max: int = 255
    viewer_name_chars_max: int = 64
    #: Bounds of a session's per-minute rate (the model chooses within them), in minor units.
    rate_min_minor: int = 1
    rate_max_minor: int = 100_000
    #: Longest minimum duration a model may ask for, in seconds.
    session_minimum_s_max: int = 3_600
    #: Sessions one tab may fund at once.
    sessions_per_tab_max: int = 4
    #: How long a billing process's lease on a session lasts without renewal (it renews every
    #: tick), and so how long a dead process's sessions can go unended before the reaper.
    lease_ms: int = 3_000

    def __post_init__(self) -> None:
        checks = [
            (0 < self.tip_min_minor <= self.tip_max_minor, "0 < tip_min_minor <= tip_max_minor"),
            (self.tip_max_minor <= self.cap_max_minor, "tip_max_minor <= cap_max_minor"),
            (0 < self.cap_min_minor <= self.cap_max_minor, "0 < cap_min_minor <= cap_max_minor"),
            (self.cap_max_minor <= CAP_HARD_MAX_MINOR, f"cap_max_minor <= {CAP_HARD_MAX_MINOR}"),
            (0 <= self.payout_bp_default <= BP_ONE, f"0 <= payout_bp_default <= {BP_ONE}"),
            (self.tab_lines_max > 0, "tab_lines_max > 0"),
            (self.outbox_max > 0, "outbox_max > 0"),
            (self.room_events_max > 0, "room_events_max > 0"),
            (self.relayed_window_ms > 0 and self.relayed_max > 0, "relay dedupe bounds > 0"),
            (self.op_ttl_ms > 0, "op_ttl_ms > 0"),
            (self.message_chars_max >= 0, "message_chars_max >= 0"),
            (self.viewer_name_chars_max >= 0, "viewer_name_chars_max >= 0"),
            (0 < self.rate_min_minor <= self.rate_max_minor, "0 < rate_min <= rate_max"),
            (self.rate_max_minor <= RATE_HARD_MAX_MINOR, f"rate_max <= {RATE_HARD_MAX_MINOR}"),
            (0 <= self.session_minimum_s_max <= 86_400, "0 <= session_minimum_s_max <= 1 day"),
            (self.sessions_per_tab_max > 0, "sessions_per_tab_max > 0"),
            (self.lease_ms >= 1_000, "lease_ms >= 1000 (a tick renews it every second)"),
        ]
        for ok, rule in checks:
            if not ok:
                raise ValueError(f"inconsistent limits: {rule} does not hold in {self!r}")
