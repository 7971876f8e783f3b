"""The money core behind one object: tabs, tips and rooms sharing a store, clock and limits."""

from __future__ import annotations

from collections.abc import Sequence

from metering.allowances import ALLOWANCE_SCRIPTS
from metering.batch import Batching, Observer
from metering.clock import Clock, SystemClock
from metering.limits import Limits
from metering.outcomes import TabRef, TipResult
from metering.purchase_lifecycle import PurchaseEvent
from metering.purchase_scripts import PURCHASE_SCRIPTS, PurchaseResult, ResolveResult
from metering.purchases import PurchaseRequest, Purchases
from metering.rooms import Rooms
from metering.scripts import METERING_SCRIPTS
from metering.sessions import SESSION_SCRIPTS, Sessions
from metering.store import LuaScript, RedisTarget, Store, create_client
from metering.tabs import Tabs
from metering.tips import TipRequest, Tips


class Meter:
    """Tabs, tips and rooms over one :class:`~metering.store.Store`."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        coalesce: bool = True,
        observe: Observer | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.limits = limits if limits is not None else Limits()
        batching = Batching(coalesce, observe)
        self.rooms = Rooms(store, self.clock, self.limits, batching)
        self.tabs = Tabs(store, self.clock, self.limits)
        self.tips = Tips(store, self.clock, self.limits, self.rooms, batching)
        self.sessions = Sessions(store, self.clock, self.limits, self.rooms)
        self.purchases = Purchases(store, self.clock, self.limits, self.rooms)

    async def tip(self, ref: TabRef, tip: TipRequest) -> TipResult:
        """Apply ``tip`` and, if it was applied now, relay its event into the room."""
        result = await self.tips.apply(ref, tip)
        if result.event is not None:
            await self.rooms.relay(result.event)
        return result

    async def buy(self, ref: TabRef, request: PurchaseRequest) -> PurchaseResult:
        """Charge a catalog purchase and, if it was applied now, relay its event into the room."""
        result = await self.purchases.buy(ref, request)
        if result.event is not None:
            await self.rooms.relay(result.event)
        return result

    async def fulfil(self, customer: str, purchase_id: str) -> ResolveResult:
        """Mark a pending request done and relay its event (the model earns its share)."""
        result = await self.purchases.fulfil(customer, purchase_id)
        if result.event is not None:
            await self.rooms.relay(result.event)
        return result

    async def void(self, customer: str, purchase_id: str, event: PurchaseEvent) -> ResolveResult:
        """Void a pending request before settlement (declined or expired) and relay its event."""
        result = await self.purchases.void(customer, purchase_id, event)
        if result.event is not None:
            await self.rooms.relay(result.event)
        return result

    async def refunded(self, customer: str, purchase_id: str) -> ResolveResult:
        """Record a pending request refunded after the capture and relay its event."""
        result = await self.purchases.refunded(customer, purchase_id)
        if result.event is not None:
            await self.rooms.relay(result.event)
        return result

    async def aclose(self) -> None:
        """Finish queued work (the store stays open: its owner closes it)."""
        await self.tips.aclose()
        await self.rooms.aclose()


#: Every script of the money core: tabs, tips, rooms, sessions, purchases and allowances.
CORE_SCRIPTS = (*METERING_SCRIPTS, *SESSION_SCRIPTS, *PURCHASE_SCRIPTS, *ALLOWANCE_SCRIPTS)


async def open_store(target: RedisTarget, scripts: Sequence[LuaScript] = CORE_SCRIPTS) -> Store:
    """Connect to Redis and load ``scripts``, so the first request finds them in place."""
    store = Store(create_client(target), scripts, target.replication)
    try:
        await store.load_scripts()
    except BaseException:
        await store.close()
        raise
    return store
