"""Milliseconds since the epoch (the meter's time) to ``timestamptz`` and back, exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def at(ms: int) -> datetime:
    """The instant ``ms`` milliseconds after the epoch (UTC); exact, no float."""
    return _EPOCH + timedelta(milliseconds=ms)


def at_or_none(ms: int) -> datetime | None:
    """Like :func:`at`, with 0 (the meter's "never") as NULL."""
    return at(ms) if ms else None


def ms(instant: datetime | None) -> int:
    """Milliseconds since the epoch of ``instant`` (0 for NULL); exact, no float."""
    if instant is None:
        return 0
    delta = instant - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000 + delta.microseconds // 1_000
