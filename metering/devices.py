"""Where a customer's devices are connected: one count per server process.

``apply_tips.lua`` announces a tip's new balance on the customer's live channel only when the
customer may have another device to tell: the tipping device learns the balance from the tip's
answer, and a customer with one device (the common case) would otherwise have every tip's
balance sent back to the very process that answered it. The counts may only err upward — a
process that died keeps its count until the key expires — and an upward error costs an
announcement nobody needed, never a missed one. A process records its count *before* a new
device reads its tab for the welcome, so a tip either sees the new device (and announces) or
is applied before that read (which then shows it).
"""

from __future__ import annotations

from typing import Final

from metering import keys
from metering.store import Store, translated

#: A process's count is refreshed whenever one of the customer's devices connects or leaves;
#: one left behind by a process that died expires after this.
DEVICES_TTL_MS: Final = 86_400_000


async def record_devices(store: Store, customer: str, owner: str, count: int) -> None:
    """Record that process ``owner`` holds ``count`` of ``customer``'s connections."""
    key = keys.customer_devices(customer)
    with translated():
        if count > 0:
            async with store.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, owner, count)
                pipe.pexpire(key, DEVICES_TTL_MS)
                await pipe.execute()
        else:
            await store.client.hdel(key, owner)
