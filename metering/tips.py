"""Tips: a viewer's tab pays a model's room, atomically, at most once, never past the cap."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from metering import scripts
from metering.batch import COALESCED, Batching, Coalescer
from metering.clock import Clock
from metering.keys import check_id, is_id
from metering.limits import Limits
from metering.money import is_currency, is_positive_amount
from metering.outcomes import Code, TabRef, TipResult
from metering.rooms import Rooms
from metering.scripts import TipItem
from metering.store import Store


# Not frozen, and to be treated as immutable: built on every tip, and a frozen dataclass
# sets each field through object.__setattr__ (see docs/benchmarks.md).
@dataclass(slots=True)
class TipRequest:
    """A tip as the viewer asked for it. ``tip_id`` is minted by the client and kept until the
    tip is acknowledged, so a retry after any failure is harmless.

    Fields may hold anything the wire carried; :meth:`Tips.validate` decides.
    """

    tip_id: str
    room: str
    amount_minor: int
    currency: str
    viewer_name: str = ""
    anonymous: bool = False
    message: str = ""


def _is_text(value: object, chars_max: int) -> bool:
    return type(value) is str and len(value) <= chars_max and value.isprintable()


class Tips:
    """Applies tips, coalescing concurrent callers into batched script calls."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        limits: Limits,
        rooms: Rooms,
        batching: Batching = COALESCED,
    ) -> None:
        self._store = store
        self._clock = clock
        self._limits = limits
        self._rooms = rooms
        self._coalescer: Coalescer[TipItem, TipResult] | None = batching.coalescer(
            self._apply_batch, "apply_tips"
        )

    def validate(self, tip: TipRequest) -> Code | None:
        """Return the code refusing ``tip`` on its own fields, or None if they are valid.

        Codes, in order: invalid_id, invalid_currency, invalid_amount (not an integer, a bool,
        a float, negative, zero or beyond 2**53), amount_out_of_range (outside the tip bounds),
        invalid_field (name, message or anonymity malformed or too long).
        """
        limits = self._limits
        if not (is_id(tip.tip_id) and is_id(tip.room)):
            return Code.INVALID_ID
        if not is_currency(tip.currency):
            return Code.INVALID_CURRENCY
        if not is_positive_amount(tip.amount_minor):
            return Code.INVALID_AMOUNT
        if not (limits.tip_min_minor <= tip.amount_minor <= limits.tip_max_minor):
            return Code.AMOUNT_OUT_OF_RANGE
        if not (
            type(tip.anonymous) is bool
            and _is_text(tip.viewer_name, limits.viewer_name_chars_max)
            and _is_text(tip.message, limits.message_chars_max)
        ):
            return Code.INVALID_FIELD
        return None

    async def apply(self, ref: TabRef, tip: TipRequest) -> TipResult:
        """Apply ``tip`` against tab ``ref``; the result's ``event`` must then be relayed.

        Codes, in order: the codes of :meth:`validate`; then from Redis duplicate (the
        original result), id_reused, tab_not_found, currency_mismatch, tab_not_open, over_cap,
        lines_full, busy, applied. Nothing is written unless the code is applied.
        """
        refused = self.validate(tip)
        if refused is not None:
            return TipResult(code=refused, tip_id=str(tip.tip_id))
        check_id("customer", ref.customer)
        check_id("tab_id", ref.tab_id)
        item = TipItem(
            customer=ref.customer,
            tip_id=tip.tip_id,
            tab_id=ref.tab_id,
            room=tip.room,
            amount_minor=tip.amount_minor,
            currency=tip.currency,
            payout_bp=await self._rooms.payout_bp(tip.room),
            viewer_name=tip.viewer_name,
            anonymous=tip.anonymous,
            message=tip.message,
        )
        if self._coalescer is not None:
            return await self._coalescer.submit(item)
        return (await self._apply_batch([item]))[0]

    async def _apply_batch(self, items: Sequence[TipItem]) -> list[TipResult]:
        return await scripts.apply_tips(
            self._store, items, now_ms=self._clock.now_ms(), limits=self._limits
        )

    async def aclose(self) -> None:
        """Wait for queued tips to be applied."""
        if self._coalescer is not None:
            await self._coalescer.aclose()
