"""A seeded simulation of settlement across both stores: random tabs, tips, shows' worth of
lines, declining cards and gateway faults, settled by a worker that is interrupted at random;
afterwards the invariants of ARCHITECTURE §3 are checked in the ledger of record.

It prints its seed and figures; ``TIPMETER_SIM_SEED`` replays a run, ``TIPMETER_SIM_TABS``
makes it larger (``make soak`` explores with kill -9 of real processes).
"""

from __future__ import annotations

import os
import random
from collections import Counter

from metering.lifecycle import FreezeReason, TabState
from metering.meter import Meter
from metering.outcomes import TabRef
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.queue import request_settlement
from settlement.sandbox import Fault, SandboxGateway
from settlement.statements import build_statement
from tests.metering.helpers import tip
from tests.settlement.helpers import make_worker, open_backed_tab, past_claim_bound

SEED = int(os.environ.get("TIPMETER_SIM_SEED", "20261130"))
TABS = int(os.environ.get("TIPMETER_SIM_TABS", "60"))
ROOMS = ("roomA", "roomB", "roomC")
CARDS = (
    "tok_visa",
    "tok_visa",
    "tok_visa",
    "tok_capture_decline_insufficient_funds",
    "tok_capture_decline_stolen_card",
)
FAULTS = (Fault.TIMEOUT_AFTER_COMMIT, Fault.FAIL_BEFORE_COMMIT)
ROUNDS_MAX = 50


async def test_settlement_keeps_every_invariant_in_the_ledger(
    meter: Meter, gateway: SandboxGateway, ledger: Ledger
) -> None:
    rng = random.Random(SEED)
    print(f"seed {SEED} (replay: TIPMETER_SIM_SEED={SEED}), {TABS} tabs")
    for room in ROOMS:
        await meter.rooms.set_payout_bp(room, rng.choice((5_000, 6_000, 7_000, 8_000)))
    refs: list[TabRef] = []
    for n in range(TABS):
        cap = rng.randrange(500, 20_000)
        ref = await open_backed_tab(
            meter, gateway, customer=f"sim{n}", cap_minor=cap, card=rng.choice(CARDS)
        )
        for t in range(rng.choice((0, 1, 2, 3, 5))):
            amount = rng.randrange(1, max(cap // 5, 2))
            await meter.tip(ref, tip(f"sim{n}-{t}", amount, room=rng.choice(ROOMS)))
        reason = rng.choice((FreezeReason.MERCHANT, FreezeReason.CUSTOMER_ENDED))
        await request_settlement(meter, ref, reason)
        refs.append(ref)
    for _ in range(rng.randrange(TABS // 4, TABS // 2)):
        gateway.inject(rng.choice(("capture", "void")), rng.choice(FAULTS))

    worker = make_worker(meter, gateway, ledger)
    rounds = 0
    while rounds < ROUNDS_MAX:
        rounds += 1
        report = await worker.run_burst(sweep=rounds > 1)
        if report.left_pending == 0 and report.acked == 0 and rounds > 1:
            break
        await past_claim_bound(meter)  # past the claim bound: the entries left pending come back

    outcomes: Counter[str] = Counter()
    shares: Counter[str] = Counter()
    platform = captured_total = owed_total = 0
    async with ledger.database.connection() as conn:
        unbalanced = await journal.unbalanced_entries(conn)
    assert unbalanced == [], f"seed {SEED}: unbalanced entries {unbalanced}"
    for ref in refs:
        found = await ledger.read_tab(ref)
        assert found is not None, f"seed {SEED}: {ref} never reached the ledger"
        tab, record = found
        statement = build_statement(tab, record)  # raises if the lines do not add up
        outcomes[tab.state.value] += 1
        sid = f"{ref.customer}/{ref.tab_id}"
        owed = await ledger.account_balance(journal.customer_tab(sid, "USD"))
        if tab.state is TabState.SETTLED:
            assert record.captured_minor == statement.total_minor == tab.accrued_minor, SEED
            assert owed == 0, f"seed {SEED}: {sid} owes {owed} after its capture"
            captured_total += record.captured_minor
            platform += statement.platform_minor
            for room, share in statement.model_shares:
                shares[room] += share
        elif tab.state in (TabState.FAILED, TabState.EXPIRED):
            assert owed == tab.accrued_minor > 0, f"seed {SEED}: {sid} owes {owed}"
            assert record.captured_minor == 0
            owed_total += owed
        else:
            assert tab.state is TabState.VOIDED, f"seed {SEED}: {sid} is {tab.state}"
            assert tab.accrued_minor == 0
    # One capture per tab at the processor, and it agrees with the ledger to the cent.
    keys = Counter(c.idempotency_key for c in gateway.captures)
    assert all(n == 1 for n in keys.values()), f"seed {SEED}: a key captured twice"
    assert sum(c.amount_minor for c in gateway.captures) == captured_total, SEED
    assert len(gateway.captures) == outcomes["settled"], SEED
    cleared = await ledger.account_balance(journal.processor_clearing("sandbox", "USD"))
    assert cleared == captured_total, SEED
    for room in ROOMS:
        payable = -await ledger.account_balance(journal.model_payable(room, "USD"))
        assert payable == shares[room], f"seed {SEED}: {room} payable {payable}"
    assert -await ledger.account_balance(journal.platform_revenue("USD")) == platform, SEED
    assert -await ledger.account_balance(journal.earnings_pending("USD")) == owed_total, SEED
    print(
        f"rounds {rounds}; outcomes {dict(outcomes)}; captured {captured_total}; owed "
        f"{owed_total}; models {dict(shares)}; platform {platform}"
    )
