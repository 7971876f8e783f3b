"""The exception tree of the money core (see the package docstring)."""

from __future__ import annotations


class MeteringError(Exception):
    """Root of every exception the money core raises."""


class InvalidArgument(MeteringError, ValueError):
    """The caller passed a malformed identifier or setting: a bug on the caller's side.

    Untrusted amounts are not reported this way: they are refused with a result code, so that
    input from the wire never becomes an exception.
    """


class StoreError(MeteringError):
    """Redis answered in a way no script promises (a bug or a foreign writer)."""


class StoreUnavailable(StoreError):
    """Redis could not be reached or timed out; the operation may or may not have applied.

    Every state-changing operation is idempotent by its client-minted id, so the right reaction
    is to retry with the same id.
    """
