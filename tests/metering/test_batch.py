"""The coalescer: concurrent callers share flushes; every caller gets its own result."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from metering.batch import Coalescer
from metering.errors import StoreUnavailable


async def test_callers_queued_during_a_flush_share_the_next_one() -> None:
    sizes: list[int] = []
    release = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        if len(sizes) == 1:
            await release.wait()
        return [item * 10 for item in items]

    coalescer: Coalescer[int, int] = Coalescer(run)
    first = asyncio.create_task(coalescer.submit(0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.submit(n)) for n in range(1, 51)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 0
    assert await asyncio.gather(*rest) == [n * 10 for n in range(1, 51)]
    assert sizes == [1, 50]


async def test_a_failed_flush_fails_each_of_its_callers_and_only_them() -> None:
    calls = 0

    async def run(items: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise StoreUnavailable("down")
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(run)
    with pytest.raises(StoreUnavailable):
        await coalescer.submit(1)
    assert await coalescer.submit(2) == 2


async def test_the_queue_is_bounded() -> None:
    gate = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        await gate.wait()
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(run, queue_max=3)
    waiting = [asyncio.create_task(coalescer.submit(0))]
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the flusher has taken item 0 and waits on Redis
    waiting += [asyncio.create_task(coalescer.submit(n)) for n in range(1, 4)]
    await asyncio.sleep(0)  # items 1..3 fill the queue
    assert coalescer.queued == 3
    with pytest.raises(StoreUnavailable, match="more than 3"):
        await coalescer.submit(99)
    gate.set()
    assert await asyncio.gather(*waiting) == [0, 1, 2, 3]


async def test_a_cancelled_caller_does_not_break_the_flush() -> None:
    gate = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        await gate.wait()
        return list(items)

    coalescer: Coalescer[int, int] = Coalescer(run)
    doomed = asyncio.create_task(coalescer.submit(1))
    kept = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    assert await kept == 2
    with pytest.raises(asyncio.CancelledError):
        await doomed
