"""Allowances on a tab: a member's free seconds and discounts, reserved into the tab itself.

Theory of operation. A membership plan may give free seconds of a show kind per period and a
discount (basis points) on per-minute rates or tips (docs/subscriptions.md, "Allowances"). The
per-second billing must consume free seconds in the same atomic step as its cap check, and on
Redis Cluster a step touches one slot only: the tab's. So the allowance is not read from
anywhere else at billing time: the ledger first *reserves* what is left of the member's
allowance for one tab (so that no other tab of the member can spend it), and
:func:`reserve` then copies the reservation into the tab's own hash (``free:<kind>``,
``freeres:<kind>``, ``dbp:<kind>``). ``start_session.lua``, ``bill_sessions.lua`` and
``end_session.lua`` take free seconds from ``free:<kind>`` before they charge, and
``apply_tips.lua`` applies ``dbp:tip``; the reserve only shrinks, never below zero. At
settlement, the seconds used are read from the tab's lines (each session line says how many of
its seconds the allowance covered), recorded against the subscription's period, and the rest of
the reservation returns to the member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from metering import keys
from metering.errors import InvalidArgument
from metering.lifecycle import SPENDABLE_LUA
from metering.money import BP_ONE, is_amount
from metering.outcomes import Code, TabRef
from metering.store import LuaScript, Store, as_int, as_text, translated

RESERVE_ALLOWANCE: Final = LuaScript.load("reserve_allowance")
ALLOWANCE_SCRIPTS: Final = (RESERVE_ALLOWANCE,)

#: Longest reservation id (``<subscription>/<period>``) a tab records.
RESERVATION_ID_CHARS_MAX: Final = 220


class AllowanceKind(StrEnum):
    """What an allowance applies to: a kind of show (free seconds, a rate discount) or tips
    (a discount only)."""

    PRIVATE = "private"
    SPY = "spy"
    CAM2CAM = "cam2cam"
    TIP = "tip"


#: The kinds that can have free seconds (the session kinds, metering/sessions.py).
SECONDS_KINDS: Final = (AllowanceKind.PRIVATE, AllowanceKind.SPY, AllowanceKind.CAM2CAM)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one reservation puts into a tab for one kind: free seconds and a discount."""

    kind: AllowanceKind
    free_s: int = 0
    discount_bp: int = 0


@dataclass(frozen=True, slots=True)
class Reserve:
    """A tab's reserve of one kind: free seconds ever put in and left, and the discount."""

    kind: AllowanceKind
    reserved_s: int
    left_s: int
    discount_bp: int

    @property
    def used_s(self) -> int:
        """Free seconds the tab's sessions have taken from the reserve."""
        return self.reserved_s - self.left_s


def _check_grant(grant: Grant) -> None:
    if not isinstance(grant.kind, AllowanceKind):
        raise InvalidArgument(f"not an allowance kind: {grant.kind!r}")
    if not is_amount(grant.free_s) or (grant.kind is AllowanceKind.TIP and grant.free_s):
        raise InvalidArgument("free_s must be whole seconds (none for tips)")
    if type(grant.discount_bp) is not int or not 0 <= grant.discount_bp <= BP_ONE:
        raise InvalidArgument(f"discount_bp must be within 0..{BP_ONE}")


async def reserve(store: Store, ref: TabRef, reservation_id: str, grants: Sequence[Grant]) -> Code:
    """Add ``grants`` to ``ref``'s reserve under ``reservation_id``, at most once.

    Codes: tab_not_found, duplicate (this reservation is in the tab already), tab_not_open
    (the tab no longer spends: nothing is added), applied.
    """
    keys.check_id("customer", ref.customer)
    keys.check_id("tab_id", ref.tab_id)
    if (
        type(reservation_id) is not str
        or not 0 < len(reservation_id) <= RESERVATION_ID_CHARS_MAX
        or "}" in reservation_id
    ):
        raise InvalidArgument("reservation_id must be a short non-empty string")
    args: list[str | int] = [reservation_id, SPENDABLE_LUA]
    for grant in grants:
        _check_grant(grant)
        args += [grant.kind.value, grant.free_s, grant.discount_bp]
    reply = await store.call(RESERVE_ALLOWANCE, [keys.tab(ref.customer, ref.tab_id)], args)
    return Code(as_text(reply[0]))


async def read_reserve(store: Store, ref: TabRef) -> dict[AllowanceKind, Reserve] | None:
    """``ref``'s reserve, per kind that has one (None: no such tab)."""
    fields = ["state"]
    for kind in AllowanceKind:
        fields += [f"freeres:{kind}", f"free:{kind}", f"dbp:{kind}"]
    with translated():
        raw = await store.client.hmget(keys.tab(ref.customer, ref.tab_id), fields)
    if raw[0] is None:
        return None
    out = {}
    for n, kind in enumerate(AllowanceKind):
        reserved, left, bp = raw[1 + 3 * n : 4 + 3 * n]
        if reserved is None and bp is None:
            continue
        out[kind] = Reserve(kind, as_int(reserved or 0), as_int(left or 0), as_int(bp or 0))
    return out
