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


class PartlyUnavailable(StoreUnavailable):
    """Some items of a batch met an unreachable node (a cluster shard down or failing over);
    the others were applied on their healthy nodes.

    ``results`` holds, per item in order, its result or the :class:`StoreError` it met; a caller
    that can answer per item (the coalescer) does, any other treats the whole batch as
    unavailable, as before.
    """

    def __init__(self, results: list[object]) -> None:
        failed = sum(isinstance(result, StoreError) for result in results)
        super().__init__(f"{failed} of {len(results)} items met an unavailable node")
        self.results = results
