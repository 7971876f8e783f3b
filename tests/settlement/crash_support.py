"""Real worker processes, tabs on the HTTP sandbox, and the invariants checked after crashes.

Shared by the crash tests (``test_crash.py``) and the soak (``soak.py``). The ground truth is
the sandbox process's capture log: it outlives every worker that is killed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from metering.lifecycle import TabState
from metering.meter import Meter
from metering.outcomes import Tab, TabRef
from metering.tips import TipRequest
from settlement import scripts
from settlement.config import Checkpoint
from settlement.ledger import journal
from settlement.ledger.ledger import Ledger
from settlement.sandbox_http import HttpGateway
from settlement.scripts import SettlementRecord
from settlement.statements import build_statement, read_statement
from settlement.worker import capture_key
from tests.settlement.helpers import open_backed_tab

TIPMETER = str(Path(sys.executable).parent / "tipmeter")
#: The checkout, from where ``python -m tests.settlement.crash_worker`` finds its module.
REPO = Path(__file__).parents[2]
ROOMS = ("roomA", "roomB", "roomC")
DECLINING_CARDS = ("tok_capture_decline_insufficient_funds", "tok_capture_decline_stolen_card")


def worker_env(
    redis_url: str, sandbox_url: str, database_url: str, **settings: str
) -> dict[str, str]:
    """The environment of a worker process on ``redis_url``, the HTTP sandbox and the ledger
    at ``database_url``.

    The claim bound is the smallest allowed (1 s), so a killed worker's entries are taken over
    quickly; the gateway bound stays below it, as the settings require.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    env.update(
        {
            "TIPMETER_REDIS_URL": redis_url,
            "TIPMETER_DATABASE_URL": database_url,
            "TIPMETER_GATEWAY": "sandbox-http",
            "TIPMETER_GATEWAY_URL": sandbox_url,
            "TIPMETER_GATEWAY_TIMEOUT_MS": "800",
            "TIPMETER_SETTLE_CLAIM_IDLE_MS": "1000",
            "TIPMETER_LOG_LEVEL": "warning",
        }
    )
    env.update({f"TIPMETER_{name.upper()}": value for name, value in settings.items()})
    return env


@dataclass(frozen=True, slots=True)
class WorkerRig:
    """What a test of real worker processes works with (the ``rig`` fixture): the money core on
    the wall clock, like the workers; a gateway to the sandbox process; the ledger; the folder
    the workers' logs go to; and what a worker's environment names."""

    meter: Meter
    gateway: HttpGateway
    ledger: Ledger
    logs: Path
    redis_url: str
    sandbox_url: str
    database_url: str

    def env(self, **settings: str) -> dict[str, str]:
        """The environment of a worker process of this rig (:func:`worker_env`)."""
        return worker_env(self.redis_url, self.sandbox_url, self.database_url, **settings)


def start_worker(
    env: dict[str, str], log_path: Path, crash_at: Checkpoint | None = None
) -> subprocess.Popen[bytes]:
    """Start ``tipmeter worker`` (loop mode), or with ``crash_at`` the same worker that kills
    itself at that checkpoint (``crash_worker.py``); its output goes to ``log_path``."""
    command = [TIPMETER, "worker"]
    if crash_at is not None:
        command = [sys.executable, "-m", "tests.settlement.crash_worker", crash_at.value]
    with log_path.open("ab") as log:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def burst(env: dict[str, str], timeout_s: float = 60) -> dict[str, Any]:
    """Run ``tipmeter worker --burst`` to completion and return its report."""
    done = subprocess.run(
        [TIPMETER, "worker", "--burst"],
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"worker --burst exited {done.returncode}: {done.stderr.decode()}")
    report: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return report


async def open_tabs(
    meter: Meter,
    gateway: HttpGateway,
    count: int,
    rng: random.Random,
    prefix: str = "c",
    decline_share: float = 0.0,
) -> list[TabRef]:
    """Open ``count`` tabs on sandbox holds and spend a random amount (maybe 0) on each; a
    ``decline_share`` of them are on cards whose capture is declined."""
    refs = []
    for n in range(count):
        customer = f"{prefix}{n}"
        cap = rng.randrange(500, 5_000)
        card = rng.choice(DECLINING_CARDS) if rng.random() < decline_share else "tok_visa"
        ref = await open_backed_tab(meter, gateway, customer, cap, card)
        for t in range(rng.randrange(0, 4)):
            amount = rng.randrange(1, cap // 4)
            room = rng.choice(ROOMS)
            await meter.tip(ref, TipRequest(f"t{t}", room, amount, "USD"))
        refs.append(ref)
    return refs


@dataclass
class Findings:
    """What the invariants found; every count must be 0."""

    double_captures: int = 0
    lost_minor: int = 0
    not_terminal: int = 0
    wrong_amounts: int = 0
    earnings_off_minor: int = 0
    #: Settlements whose ledger record (missing, other outcome or amount, unbalanced journal)
    #: disagrees with Redis and the processor.
    ledger_off: int = 0
    tabs: int = 0
    captured_minor: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        """True when no invariant is broken."""
        return not (
            self.double_captures
            or self.lost_minor
            or self.not_terminal
            or self.wrong_amounts
            or self.earnings_off_minor
            or self.ledger_off
        )


async def check_invariants(
    meter: Meter, gateway: HttpGateway, refs: list[TabRef], ledger: Ledger
) -> Findings:
    """Compare Redis and the ledger of record with the sandbox's capture log.

    - one capture per tab at most (counted per hold and per idempotency key in the log);
    - conservation: each tab's accrued amount is captured (settled) or explicitly owed (failed,
      expired) or zero (voided); nothing accrued is unaccounted for;
    - every tab is terminal for settlement (not open, not settling);
    - the models' settled earnings equal the sum of the shares of the captured tabs;
    - the ledger holds exactly one settlement per tab with Redis's outcome and amounts, its
      journal balances, and capture = Σ lines = accrued, shares + platform = capture.
    """
    findings = Findings(tabs=len(refs))
    log = await gateway.capture_log()
    per_hold = Counter(entry["auth_ref"] for entry in log)
    per_key = Counter(entry["idempotency_key"] for entry in log)
    findings.double_captures = sum(n - 1 for n in per_hold.values() if n > 1) + sum(
        n - 1 for n in per_key.values() if n > 1
    )
    logged = {entry["idempotency_key"]: entry for entry in log}
    shares: Counter[str] = Counter()
    for ref in refs:
        found = await scripts.read_settlement(meter.store, ref)
        assert found is not None, ref
        tab, record = found
        findings.outcomes[tab.state.value] += 1
        entry = logged.get(capture_key(ref))
        captured = entry["amount_minor"] if entry is not None else 0
        findings.captured_minor += captured
        if tab.state in (TabState.OPEN, TabState.SETTLING) or not record.followups_done:
            findings.not_terminal += 1
        findings.ledger_off += await _ledger_disagrees(ledger, tab, record, captured)
        if tab.state is TabState.SETTLED:
            statement = await read_statement(meter.store, ref)
            assert statement is not None
            if not (
                captured == record.captured_minor == statement.total_minor == tab.accrued_minor
            ):
                findings.wrong_amounts += 1
            findings.lost_minor += abs(tab.accrued_minor - captured)
            for room, share in statement.model_shares:
                shares[room] += share
        elif tab.state is TabState.VOIDED:
            findings.lost_minor += tab.accrued_minor + captured
        elif tab.state in (TabState.FAILED, TabState.EXPIRED):
            if not record.decline_reason:
                findings.wrong_amounts += 1
            # Owed, by an explicit decision of record: nothing captured, the amount kept.
            findings.lost_minor += captured + abs(tab.accrued_minor - (record.amount_minor or 0))
        else:
            findings.lost_minor += tab.accrued_minor
    for room in ROOMS:
        earned = 0
        for earnings in await ledger.room_earnings(room):
            earned += earnings.share_minor if earnings.currency == "USD" else 0
        payable = -await ledger.account_balance(journal.model_payable(room, "USD"))
        findings.earnings_off_minor += abs(earned - shares[room]) + abs(payable - shares[room])
    async with ledger.database.connection() as conn:
        findings.ledger_off += len(await journal.unbalanced_entries(conn))
    return findings


async def _ledger_disagrees(
    ledger: Ledger, tab: Tab, record: SettlementRecord, captured: int
) -> int:
    """1 if the ledger's record of a settled tab disagrees with Redis or the processor."""
    if tab.state in (TabState.OPEN, TabState.SETTLING):
        return 0
    found = await ledger.read_tab(tab.ref)
    if found is None:
        return 1
    kept, kept_record = found
    statement = build_statement(kept, kept_record)  # raises if the lines do not add up
    same = (
        kept.state is tab.state
        and kept.accrued_minor == tab.accrued_minor
        and kept.lines == tab.lines
        and kept_record.outcome is record.outcome
        and kept_record.captured_minor == record.captured_minor == captured
        and kept_record.capture_id == record.capture_id
        and statement.platform_minor + sum(s for _, s in statement.model_shares)
        == kept.accrued_minor
    )
    return 0 if same else 1
