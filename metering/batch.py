"""Coalescing: many concurrent callers' script items, sent in few round trips.

Theory of operation. Awaiting one script call per message caps a server process near a few
thousand messages a second: each await costs a full round trip and a pass through the event
loop. A :class:`Coalescer` instead queues each caller's item with a future; one flusher task
takes everything queued, sends it as one batched script call (or one call per slot, in one
pipeline, on a cluster — see :meth:`metering.store.Store.call_batched`), and resolves every
future. While a flush is in flight new items queue up, so the batch size adapts to the load by
itself: one item when idle (no added latency), hundreds under load (one round trip for all).

The queue is bounded (:attr:`Coalescer.queue_max`): past it, :meth:`Coalescer.submit` raises
:class:`~metering.errors.StoreUnavailable` at once rather than letting memory and latency grow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, Generic, TypeVar, cast

from metering.errors import PartlyUnavailable, StoreError, StoreUnavailable

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: Told (operation name, items, seconds) after each flush; metrics hang off it.
Observer = Callable[[str, int, float], None]

#: Items waiting for a flush, across all callers, before new ones are turned away.
QUEUE_MAX_DEFAULT: Final = 50_000
#: Items one flush takes at most (the store splits them further into calls).
FLUSH_ITEMS_MAX_DEFAULT: Final = 4_096


class Coalescer(Generic[ItemT, ResultT]):
    """Queue items from concurrent callers and apply them in batches through ``run``.

    ``run`` receives a batch and must return one result per item, in order. If it raises, every
    caller of that batch gets the exception, except for
    :class:`~metering.errors.PartlyUnavailable`, whose per-item results and errors go to each
    caller. ``on_flush`` is told the size and duration (in
    seconds) of every successful flush, for metrics.
    """

    def __init__(
        self,
        run: Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]],
        *,
        queue_max: int = QUEUE_MAX_DEFAULT,
        flush_items_max: int = FLUSH_ITEMS_MAX_DEFAULT,
        on_flush: Callable[[int, float], None] | None = None,
    ) -> None:
        self._run = run
        self.queue_max = queue_max
        self.flush_items_max = flush_items_max
        self._on_flush = on_flush
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._flusher: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """How many items wait for a flush."""
        return len(self._pending)

    async def submit(self, item: ItemT) -> ResultT:
        """Queue ``item``, wait for the flush that carries it, and return its result."""
        return await self.enqueue(item)

    def enqueue(self, item: ItemT) -> asyncio.Future[ResultT]:
        """Queue ``item`` and return the future of its result, without waiting for it."""
        if len(self._pending) >= self.queue_max:
            raise StoreUnavailable(f"more than {self.queue_max} items waiting for Redis")
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all())
        return future

    async def _flush_all(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self.flush_items_max]
                del self._pending[: self.flush_items_max]
                await self._flush(batch)
        finally:
            self._flusher = None

    async def _flush(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        started = time.perf_counter()
        answers: Sequence[object]
        try:
            answers = await self._run([item for item, _ in batch])
        except PartlyUnavailable as partly:
            # A cluster shard failed: only the callers whose items went there get the error.
            answers = partly.results
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if self._on_flush is not None:
            self._on_flush(len(batch), time.perf_counter() - started)
        for (_, future), answer in zip(batch, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, StoreError):
                future.set_exception(answer)
            else:
                future.set_result(cast(ResultT, answer))

    async def aclose(self) -> None:
        """Wait for the items already queued to be flushed."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.shield(flusher)


@dataclass(frozen=True, slots=True)
class Batching:
    """How a component sends its callers' items: coalesced into batched script calls (off:
    each call goes to Redis on its own), each flush reported to ``observe`` (the metrics)."""

    coalesce: bool = True
    observe: Observer | None = None

    def coalescer(
        self, run: Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT]]], operation: str
    ) -> Coalescer[ItemT, ResultT] | None:
        """A :class:`Coalescer` of ``run`` that reports its flushes as ``operation``; None when
        coalescing is off."""
        if not self.coalesce:
            return None
        observe = self.observe
        return Coalescer(run, on_flush=None if observe is None else partial(observe, operation))


#: The default: concurrent callers coalesced, nobody observing.
COALESCED: Final = Batching()
