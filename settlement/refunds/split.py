"""The rounding rule of every refund and dispute, in one function, and the spread of an amount
over a tab's lines.

**The rule.** When ``taken_minor`` of a line that captured ``captured_minor`` has been taken
back (refunds and open or lost disputes together), the model's part of what was taken back is
``floor(taken_minor × share_minor / captured_minor)`` (:func:`model_part`); the platform's part
is the rest. Each refund or dispute takes ``model_part(after) − model_part(before)``, so the
rounding never accumulates: once a line is taken back whole, exactly the model's share and
exactly the platform's share have been taken back, whatever the steps. Flooring gives any
fraction of a cent to the model (the platform absorbs it), the same direction the charge's own
split rounds the platform's part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def model_part(taken_minor: int, captured_minor: int, share_minor: int) -> int:
    """The model's part of ``taken_minor`` taken back from a line: ``floor(taken × share /
    captured)``. Invariant: 0 at 0, ``share_minor`` at ``captured_minor``, never decreasing."""
    if captured_minor <= 0 or not 0 <= taken_minor <= captured_minor:
        raise ValueError("taken_minor must be within 0..captured_minor of a captured line")
    return taken_minor * share_minor // captured_minor


def step_part(
    amount_minor: int,
    *,
    taken_before_minor: int,
    model_taken_before_minor: int,
    captured_minor: int,
    share_minor: int,
) -> int:
    """The model's part of taking ``amount_minor`` more from a line: what :func:`model_part`
    says after the step, less what was taken from her before, kept within ``0..amount_minor``
    and within her share (so the platform's part is never negative either)."""
    target = model_part(taken_before_minor + amount_minor, captured_minor, share_minor)
    part = target - model_taken_before_minor
    return max(0, min(part, amount_minor, share_minor - model_taken_before_minor))


@dataclass(frozen=True, slots=True)
class Room:
    """What may still be taken from one line (``line_id``), in the order to take it."""

    line_id: str
    available_minor: int


def spread(amount_minor: int, lines: Sequence[Room]) -> dict[str, int]:
    """Spread ``amount_minor`` over ``lines`` in their order, each line taking at most what it
    has available; the lines that take nothing are left out. Raises ValueError if the lines
    cannot hold the amount."""
    taken: dict[str, int] = {}
    left = amount_minor
    for line in lines:
        if left == 0:
            break
        part = min(left, line.available_minor)
        if part > 0:
            taken[line.line_id] = part
            left -= part
    if left:
        raise ValueError(f"{left} minor units beyond what the lines hold")
    return taken
