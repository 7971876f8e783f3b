"""Reconciliation finds each kind of disagreement between the ledger, Redis and the processor,
planted one by one, and nothing when the three agree."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from metering import keys
from metering.clock import FakeClock
from metering.lifecycle import FreezeReason
from metering.meter import Meter
from metering.outcomes import TabRef
from settlement import scripts
from settlement.ledger.ledger import Ledger
from settlement.ledger.reconcile import MismatchKind, reconcile
from settlement.ledger.settlements import SettlementFacts
from settlement.outcomes import SettlementOutcome
from settlement.queue import request_settlement
from settlement.sandbox import SandboxGateway
from settlement.statements import build_statement
from settlement.worker import capture_key
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab

TIPMETER = str(Path(sys.executable).parent / "tipmeter")


def _window(clock: FakeClock) -> tuple[datetime, datetime]:
    now = datetime.fromtimestamp(clock.now_ms() / 1_000, tz=UTC)
    return now - timedelta(days=1), now + timedelta(days=1)


async def _settled(meter: Meter, gateway: SandboxGateway, ledger: Ledger, customer: str) -> TabRef:
    ref = await open_backed_tab(meter, gateway, customer=customer)
    await meter.tip(ref, tip(f"{customer}-t", 400))
    await request_settlement(meter, ref, FreezeReason.MERCHANT)
    await make_worker(meter, gateway, ledger).run_burst(sweep=False)
    return ref


async def test_each_planted_mismatch_is_reported(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger, clock: FakeClock
) -> None:
    since, until = _window(clock)
    agreed = await _settled(meter, gateway, ledger, "agreed")
    clean = await reconcile(ledger, meter.store, {"sandbox": gateway}, since, until)
    assert clean.mismatches == []
    assert clean.ledger_settlements == 1

    # 1. amount_differs: Redis says another amount than the ledger recorded.
    differs = await _settled(meter, gateway, ledger, "differs")
    await meter.store.client.hset(keys.tab(differs.customer, differs.tab_id), "captured", 399)

    # 2. missing_from_ledger: the outcome reached Redis, the worker died before the ledger
    #    (after the last burst, which would have finished it).
    missing = await open_backed_tab(meter, gateway, customer="missing")
    await meter.tip(missing, tip("m1", 300))
    await request_settlement(meter, missing, FreezeReason.MERCHANT)
    begun = await scripts.begin_settlement(
        meter.store, missing, key=capture_key(missing), now_ms=clock.now_ms()
    )
    captured = await gateway.capture(
        idempotency_key=capture_key(missing), auth_ref=begun.auth_ref, amount_minor=300
    )
    await scripts.record_settlement(
        meter.store,
        missing,
        SettlementOutcome.CAPTURED,
        now_ms=clock.now_ms(),
        captured_minor=300,
        capture_id=captured.capture_id,
    )

    # 3. capture_without_settlement: the processor captured under a settlement's key that no
    #    settlement claims.
    stray = await gateway.authorize(
        idempotency_key="auth:stray", payment_method="tok_visa", amount_minor=900, currency="USD"
    )
    stray_capture = await gateway.capture(
        idempotency_key="capture:stray/tab_x", auth_ref=stray.auth_ref, amount_minor=900
    )

    # 4. settled_without_capture: the ledger says captured; the processor never captured it.
    found = await scripts.read_settlement(meter.store, agreed)
    assert found is not None
    tab, record = found
    ghost_ref = TabRef("ghost", tab.ref.tab_id)
    ghost = SettlementFacts(
        dataclasses.replace(tab, ref=ghost_ref),
        dataclasses.replace(
            record, capture_id="cap_ghost", idempotency_key="capture:ghost/" + tab.ref.tab_id
        ),
        build_statement(tab, record),
        "sandbox",
    )
    assert await ledger.record_settlement(ghost)

    report = await reconcile(ledger, meter.store, {"sandbox": gateway}, since, until)

    found_kinds = {(m.kind, m.subject) for m in report.mismatches}
    assert found_kinds == {
        (MismatchKind.MISSING_FROM_LEDGER, f"missing/{missing.tab_id}"),
        (MismatchKind.AMOUNT_DIFFERS, f"differs/{differs.tab_id}"),
        (MismatchKind.CAPTURE_WITHOUT_SETTLEMENT, stray_capture.capture_id),
        (MismatchKind.SETTLED_WITHOUT_CAPTURE, f"ghost/{tab.ref.tab_id}"),
    }
    assert report.render().count("\n") == len(report.mismatches) + 1
    # Outside the window, the ledger and Redis have nothing to compare.
    later = await reconcile(
        ledger, meter.store, {"sandbox": gateway}, until, until + timedelta(days=1)
    )
    assert {m.kind for m in later.mismatches} == {MismatchKind.CAPTURE_WITHOUT_SETTLEMENT}


def test_the_command_exits_non_zero_and_prints_each_mismatch(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    env |= {
        "TIPMETER_REDIS_URL": redis_url,
        "TIPMETER_DATABASE_URL": database_url,
        "TIPMETER_WORKER": "on",
        "TIPMETER_DATA_DIR": str(tmp_path / "data"),
    }
    # The processor's own record: a sandbox journal with a capture no settlement claims.
    journal = tmp_path / "data" / "sandbox.jsonl"
    sandbox = SandboxGateway(journal_path=journal)

    async def plant() -> None:
        hold = await sandbox.authorize(
            idempotency_key="auth:x", payment_method="tok_visa", amount_minor=500, currency="USD"
        )
        await sandbox.capture(
            idempotency_key="capture:nobody/tab_1", auth_ref=hold.auth_ref, amount_minor=500
        )

    import asyncio

    asyncio.run(plant())
    sandbox.close()
    args = [TIPMETER, "reconcile", "--since", "2020-01-01", "--until", "2100-01-01"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("capture_without_settlement\tcap_")
    assert "1 mismatch(es)" in done.stdout

    bad = subprocess.run(
        [TIPMETER, "reconcile", "--since", "yesterday", "--until", "2100-01-01"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "'yesterday' is not an ISO 8601 date" in bad.stderr
