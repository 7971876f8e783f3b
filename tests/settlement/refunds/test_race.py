"""Concurrent refunds of one tab from several processes never exceed the capture, per line
and per tab, to the cent: the bound is held by PostgreSQL (row locks, CHECKs), not by Python.

A ``tipmeter sandbox-gateway`` process is the processor every process refunds at; each racing
process is a separate Python interpreter with its own connection pool.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
from multiprocessing.synchronize import Barrier
from typing import Any

from metering.clock import FakeClock, SystemClock
from metering.meter import Meter
from metering.outcomes import TabRef
from settlement.ledger import journal
from settlement.ledger.db import DatabaseConfig
from settlement.ledger.ledger import Ledger
from settlement.refunds.policy import Reason
from settlement.refunds.service import RefundRequest, Refunds
from settlement.sandbox_http import HttpGateway
from tests.settlement.refunds.helpers import settled_tab
from tests.support.processes import TipmeterProcess

PROCESSES = 4
REFUNDS_PER_PROCESS = 6


def _race(
    number: int,
    url: str,
    sandbox_url: str,
    ref: tuple[str, str],
    lines: list[str],
    barrier: Barrier,
    results: Any,
) -> None:
    async def run() -> list[dict[str, Any]]:
        ledger = await Ledger.open(DatabaseConfig(url=url, connections_max=REFUNDS_PER_PROCESS))
        gateway = HttpGateway(sandbox_url)
        refunds = Refunds(ledger.database, lambda _name: gateway, SystemClock())
        chooser = random.Random(number)
        requests = []
        for i in range(REFUNDS_PER_PROCESS):
            # Support refunds (the policy allows up to what is left): only the bound decides.
            if i % 2:
                lines_asked: dict[str, int | None] = {
                    chooser.choice(lines): chooser.randint(1, 200)
                }
                amount = None
            else:
                lines_asked, amount = {}, chooser.randint(1, 250)
            requests.append(
                RefundRequest(
                    f"race-{number}-{i}",
                    TabRef(*ref),
                    Reason.GOODWILL,
                    lines=lines_asked,
                    amount_minor=amount,
                    override_by="support",
                    override_reason="race",
                )
            )
        barrier.wait()
        answers = await asyncio.gather(*(refunds.request(r) for r in requests))
        await ledger.close()
        return [a.body for a in answers]

    results.put(asyncio.run(run()))


async def test_refunds_racing_from_several_processes_never_exceed_the_capture(
    meter: Meter,
    ledger: Ledger,
    clock: FakeClock,
    database_url: str,
    sandbox_process: TipmeterProcess,
) -> None:
    gateway = HttpGateway(sandbox_process.base_url)
    ref, capture_id = await settled_tab(
        meter,
        gateway,
        ledger,
        clock,
        tips=(("t1", 301, "roomA"), ("t2", 250, "roomB"), ("t3", 199, "roomA")),
        show_s=90,
    )
    found = await ledger.read_tab(ref)
    assert found is not None
    lines = {line.line_id: line.amount_minor for line in found[0].lines}
    captured = sum(lines.values())

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=_race,
            args=(
                n,
                database_url,
                sandbox_process.base_url,
                (ref.customer, ref.tab_id),
                sorted(lines),
                barrier,
                results,
            ),
        )
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    bodies = [body for _ in processes for body in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    succeeded = [b for b in bodies if b["status"] == "succeeded"]
    refused = [b for b in bodies if b["status"] == "refused"]
    assert len(succeeded) + len(refused) == PROCESSES * REFUNDS_PER_PROCESS
    assert succeeded
    assert refused
    assert all(b["decision"]["reason"] == "exceeds_refundable" for b in refused)
    refunded = sum(b["amount_minor"] for b in succeeded)
    assert refunded <= captured
    per_line: dict[str, int] = {}
    for body in succeeded:
        for line in body["lines"]:
            per_line[line["line_id"]] = per_line.get(line["line_id"], 0) + line["amount_minor"]
    assert all(per_line[line_id] <= lines[line_id] for line_id in per_line)
    # The processor's own record agrees to the cent, and every entry balances.
    async with ledger.database.connection() as conn:
        assert await journal.unbalanced_entries(conn) == []
        cursor = await conn.execute(
            "SELECT refunded_minor FROM refundable_tabs WHERE settlement_id = %s",
            (f"{ref.customer}/{ref.tab_id}",),
        )
        row = await cursor.fetchone()
    assert row is not None
    assert row["refunded_minor"] == refunded
    assert (
        -await ledger.account_balance(journal.processor_clearing("sandbox", "USD"))
        == refunded - captured
    )
    for body in succeeded:
        processor = await gateway.lookup(f"refund:{body['refund_id']}")
        assert processor is not None
        assert processor.amount_minor == body["amount_minor"]  # type: ignore[union-attr]
    assert capture_id
