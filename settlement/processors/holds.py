"""Settling a tab held by several authorizations: one capture per hold.

A processor without incremental authorization (Segpay Post Pay) raises a tab's cap by a second
hold under the same tab (:attr:`metering.outcomes.Tab.second_holds`). Such a tab settles with
one capture per hold: the amount fills the first hold, then each further hold in order
(earliest expiry first); a hold left with nothing to capture is released. The viewer's
statement says so (``authorizations``).

Keys stay derived from the settlement, never from an attempt: the first hold keeps the tab's
capture key, each further hold's capture and release add ``#<auth_ref>`` to it, so every retry
by any worker repeats the same requests and each hold is captured at most once.

A decline of the first capture is the tab's decline, as with one hold. A decline after an
earlier capture of the same tab committed cannot be recorded as either outcome (money moved,
but not all of it): it raises :class:`PartialCapture`, which leaves the entry for an operator
after the delivery bound (the captures made are replayed, never repeated).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from metering.outcomes import Tab
from settlement.errors import SettlementError
from settlement.gateway import Authorization, CaptureResult, Gateway, Outcome, VoidResult

#: How the caller awaits each gateway call (the worker bounds it in time).
Call = Callable[[Awaitable[Any]], Awaitable[Any]]


class PartialCapture(SettlementError):
    """Some holds of a tab were captured and a later one was declined: an operator decides."""


@dataclass(frozen=True, slots=True)
class Part:
    """What to capture from one hold."""

    auth_ref: str
    hold_minor: int
    capture_minor: int
    first: bool


def parts(tab: Tab, auth_ref: str, amount_minor: int) -> tuple[Part, ...]:
    """Split ``amount_minor`` over the tab's holds: the first hold (``auth_ref``), then each
    further one in order."""
    second = sum(h.amount_minor for h in tab.second_holds)
    holds = [(auth_ref, tab.cap_minor - second, True)]
    holds += [(h.auth_ref, h.amount_minor, False) for h in tab.second_holds]
    remaining = amount_minor
    split = []
    for ref, hold_minor, first in holds:
        take = min(remaining, hold_minor)
        remaining -= take
        split.append(Part(ref, hold_minor, take, first))
    if remaining:
        raise SettlementError(
            f"the tab's holds cover {amount_minor - remaining}, not {amount_minor}"
        )
    return tuple(split)


def _key(key: str, part: Part) -> str:
    return key if part.first else f"{key}#{part.auth_ref}"


async def capture_parts(
    gateway: Gateway,
    split: tuple[Part, ...],
    *,
    capture_key: str,
    void_key: str,
    call: Call,
) -> CaptureResult:
    """Capture each part, release the holds with nothing to capture; one combined result
    (``capture_id`` is the first capture's; the amount is the sum)."""
    results: list[CaptureResult] = []
    released = 0
    for part in split:
        if part.capture_minor == 0:
            voided = await call(
                gateway.void(idempotency_key=_key(void_key, part), auth_ref=part.auth_ref)
            )
            released += voided.released_minor if isinstance(voided, VoidResult) else 0
            continue
        result = await call(
            gateway.capture(
                idempotency_key=_key(capture_key, part),
                auth_ref=part.auth_ref,
                amount_minor=part.capture_minor,
            )
        )
        if not isinstance(result, CaptureResult):
            raise SettlementError(f"a capture answered {type(result).__name__}")
        if not result.approved:
            if results:
                raise PartialCapture(
                    f"captured {sum(r.amount_minor for r in results)} on earlier holds, then "
                    f"hold {part.auth_ref} declined ({result.decline_reason})"
                )
            return result
        results.append(result)
        released += result.released_minor
    return CaptureResult(
        Outcome.APPROVED,
        capture_id=results[0].capture_id,
        amount_minor=sum(r.amount_minor for r in results),
        released_minor=released,
        processor_ref=",".join(r.processor_ref for r in results),
    )


async def void_parts(
    gateway: Gateway, tab: Tab, auth_ref: str, *, void_key: str, call: Call
) -> int:
    """Release every hold of the tab; the minor units released."""
    released = 0
    for part in parts(tab, auth_ref, 0):
        voided = await call(
            gateway.void(idempotency_key=_key(void_key, part), auth_ref=part.auth_ref)
        )
        released += voided.released_minor if isinstance(voided, VoidResult) else 0
    return released


async def captured_parts(
    gateway: Gateway, split: tuple[Part, ...], *, call: Call
) -> CaptureResult | None:
    """What an earlier attempt captured, asking each hold's processor (read-after-write): the
    combined capture when every part was captured, None when none was; PartialCapture else."""
    found: list[CaptureResult] = []
    for part in split:
        if part.capture_minor == 0:
            continue
        auth = await call(gateway.lookup_authorization(part.auth_ref))
        capture = auth.capture_result() if isinstance(auth, Authorization) else None
        if capture is not None:
            found.append(capture)
    wanted = sum(1 for p in split if p.capture_minor)
    if not found:
        return None
    if len(found) != wanted:
        raise PartialCapture(f"{len(found)} of {wanted} holds were captured before the expiry")
    return CaptureResult(
        Outcome.APPROVED,
        capture_id=found[0].capture_id,
        amount_minor=sum(c.amount_minor for c in found),
        released_minor=sum(c.released_minor for c in found),
    )
