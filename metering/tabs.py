"""Tabs: open a Post Pay credit line, raise its cap, read it, freeze it for settlement."""

from __future__ import annotations

import secrets
from typing import Final

from metering import keys, scripts
from metering.clock import Clock
from metering.errors import InvalidArgument
from metering.keys import check_id
from metering.lifecycle import FreezeReason, TabState
from metering.limits import Limits
from metering.money import is_amount, is_currency
from metering.outcomes import Balance, CapResult, Code, FreezeResult, OpenResult, Tab, TabRef
from metering.store import Store, as_int, as_text, translated

#: Longest gateway authorization reference accepted.
AUTH_REF_CHARS_MAX: Final = 128
#: Longest processor name, or record of processors tried, a tab keeps.
PROCESSOR_TEXT_CHARS_MAX: Final = 1_024


def new_tab_id() -> str:
    """Mint a tab id: ``tab_`` and 128 random bits (url-safe base64)."""
    return f"tab_{secrets.token_urlsafe(16)}"


def _check_text(kind: str, value: object, chars_max: int) -> str:
    if type(value) is not str or not value or len(value) > chars_max:
        raise InvalidArgument(f"{kind} must be a non-empty string of at most {chars_max} chars")
    return value


class Tabs:
    """Operations on tabs. Each refuses bad input with a code and leaves Redis untouched."""

    def __init__(self, store: Store, clock: Clock, limits: Limits) -> None:
        self._store = store
        self._clock = clock
        self._limits = limits

    def _cap_code(self, cap_minor: object) -> Code | None:
        if not is_amount(cap_minor):
            return Code.INVALID_AMOUNT
        if not (self._limits.cap_min_minor <= cap_minor <= self._limits.cap_max_minor):
            return Code.CAP_OUT_OF_RANGE
        return None

    async def open(
        self,
        *,
        customer: str,
        currency: str,
        cap_minor: int,
        auth_ref: str,
        capture_before_ms: int,
        tab_id: str | None = None,
        processor: str = "",
        processor_tried: str = "",
        payment_method: str = "",
    ) -> OpenResult:
        """Open a tab for ``customer`` in ``currency`` with a spending cap of ``cap_minor``.

        ``auth_ref`` is the gateway's reference of the hold that backs the cap, valid until
        ``capture_before_ms``, at ``processor`` (every later call for the tab goes there;
        ``processor_tried`` records the processors asked, see :mod:`settlement.processors`;
        ``payment_method`` is kept for a second hold where that processor cannot raise one).
        Pass the same ``tab_id`` to retry safely.

        Codes, in order: invalid_currency, invalid_amount, cap_out_of_range, duplicate,
        id_reused, tab_already_open (``tab_id`` then names the open tab), applied.
        """
        check_id("customer", customer)
        tab_id = check_id("tab_id", tab_id if tab_id is not None else new_tab_id())
        _check_text("auth_ref", auth_ref, AUTH_REF_CHARS_MAX)
        for name, value in (
            ("processor", processor),
            ("processor_tried", processor_tried),
            ("payment_method", payment_method),
        ):
            if type(value) is not str or len(value) > PROCESSOR_TEXT_CHARS_MAX:
                raise InvalidArgument(
                    f"{name} must be a string of at most {PROCESSOR_TEXT_CHARS_MAX} chars"
                )
        if not is_currency(currency):
            return OpenResult(code=Code.INVALID_CURRENCY, tab_id=tab_id)
        refused = self._cap_code(cap_minor)
        if refused is not None:
            return OpenResult(code=refused, tab_id=tab_id)
        if not is_amount(capture_before_ms):
            raise InvalidArgument("capture_before_ms must be a time in milliseconds")
        now_ms = self._clock.now_ms()
        with translated():
            async with self._store.client.pipeline(transaction=False) as pipe:
                pipe.exists(keys.tab(customer, tab_id))
                pipe.exists(keys.open_tab(customer, currency))
                tab_exists, other_open = await pipe.execute()
        if not (tab_exists or other_open):
            # The index entry goes first, so that no tab ever exists unindexed: if this process
            # dies between the two steps, the sweeper finds an entry with no tab and drops it.
            # A refused open (the tab exists, or another is open) writes nothing at all.
            await self._index(customer, tab_id, now_ms)
        return await scripts.open_tab(
            self._store,
            customer=customer,
            tab_id=tab_id,
            currency=currency,
            cap_minor=cap_minor,
            auth_ref=auth_ref,
            capture_before_ms=capture_before_ms,
            now_ms=now_ms,
            processor=processor,
            processor_tried=processor_tried,
            payment_method=payment_method,
        )

    async def _index(self, customer: str, tab_id: str, due_ms: int) -> None:
        shard = keys.tab_index_shard(customer)
        with translated():
            await self._store.client.zadd(
                keys.tab_index(shard), {keys.tab_index_member(customer, tab_id): due_ms}, nx=True
            )

    async def raise_cap(
        self,
        ref: TabRef,
        *,
        cap_minor: int,
        auth_ref: str,
        capture_before_ms: int,
        second_hold_minor: int = 0,
    ) -> CapResult:
        """Raise ``ref``'s cap to ``cap_minor`` (an absolute target, so repeats are harmless).

        ``auth_ref`` is the raised hold; with ``second_hold_minor``, it is a second hold of that
        amount under the tab instead (its processor cannot raise a hold in place), recorded
        beside the first (:attr:`Tab.second_holds`): the tab then settles with one capture per
        hold.

        Codes, in order: invalid_amount, cap_out_of_range, tab_not_found, tab_not_open,
        duplicate (the cap is already ``cap_minor``), cap_not_raised, applied.
        """
        _check_ref(ref)
        _check_text("auth_ref", auth_ref, AUTH_REF_CHARS_MAX)
        refused = self._cap_code(cap_minor)
        if refused is not None:
            return CapResult(code=refused)
        if not is_amount(capture_before_ms):
            raise InvalidArgument("capture_before_ms must be a time in milliseconds")
        if not is_amount(second_hold_minor):
            raise InvalidArgument("second_hold_minor must be an amount in minor units")
        return await scripts.raise_cap(
            self._store,
            ref,
            cap_minor=cap_minor,
            auth_ref=auth_ref,
            capture_before_ms=capture_before_ms,
            now_ms=self._clock.now_ms(),
            second_hold_minor=second_hold_minor,
        )

    async def freeze(self, ref: TabRef, reason: FreezeReason | str) -> FreezeResult:
        """Freeze ``ref`` for settlement: no further spend; ``reason`` says which trigger fired.

        Codes, in order: tab_not_found, duplicate (frozen before; the original reason and time
        are returned), tab_not_open, applied.
        """
        _check_ref(ref)
        try:
            reason = FreezeReason(reason)
        except ValueError:
            raise InvalidArgument(f"not a freeze reason: {reason!r}") from None
        with translated():
            currency = await self._store.client.hget(keys.tab(ref.customer, ref.tab_id), "currency")
        if currency is None:
            return FreezeResult(code=Code.TAB_NOT_FOUND)
        return await scripts.freeze_tab(
            self._store,
            ref,
            currency=as_text(currency),
            reason=reason.value,
            now_ms=self._clock.now_ms(),
        )

    async def read(self, ref: TabRef) -> Tab | None:
        """Read ``ref`` and its lines in one consistent snapshot; None if there is no such tab."""
        _check_ref(ref)
        return await scripts.read_tab(self._store, ref)

    async def balance(self, ref: TabRef) -> tuple[str, Balance] | None:
        """The currency and live balance of ``ref`` (one HMGET), or None if there is no such tab."""
        _check_ref(ref)
        with translated():
            raw = await self._store.client.hmget(
                keys.tab(ref.customer, ref.tab_id),
                ["currency", "state", "cap", "accrued", "ver", "burn"],
            )
        if raw[0] is None:
            return None
        balance = Balance(
            state=TabState(as_text(raw[1])),
            cap_minor=as_int(raw[2]),
            accrued_minor=as_int(raw[3]),
            version=as_int(raw[4]),
            burn_minor_per_minute=as_int(raw[5] or 0),
        )
        return as_text(raw[0]), balance

    async def find_open(self, customer: str, currency: str) -> str | None:
        """Return the id of ``customer``'s open tab in ``currency``, if there is one."""
        check_id("customer", customer)
        if not is_currency(currency):
            return None
        with translated():
            tab_id = await self._store.client.get(keys.open_tab(customer, currency))
        return as_text(tab_id) if tab_id is not None else None


def _check_ref(ref: TabRef) -> None:
    check_id("customer", ref.customer)
    check_id("tab_id", ref.tab_id)
