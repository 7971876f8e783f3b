"""Settlement's settings: read from TIPMETER_* variables, checked for consistency."""

from __future__ import annotations

import os
import subprocess

import pytest

from server.config import Settings
from server.errors import ConfigError
from settlement.config import Checkpoint, SettlementConfig
from settlement.errors import SettlementMisuse
from tests.settlement.crash_support import TIPMETER
from tests.settlement.crash_worker import kill_at


def test_settings_fill_the_settlement_config() -> None:
    settings = Settings.from_env(
        {
            "TIPMETER_SETTLE_IDLE_TIMEOUT_MS": "60000",
            "TIPMETER_SETTLE_HOLD_MARGIN_MS": "7200000",
            "TIPMETER_SETTLE_CAP_GRACE_MS": "30000",
            "TIPMETER_SETTLE_CLAIM_IDLE_MS": "30000",
            "TIPMETER_GATEWAY_TIMEOUT_MS": "10000",
            "TIPMETER_WEBHOOK_URL": "https://cam.example/hooks",
            "TIPMETER_WEBHOOK_SECRET": "s3",
        }
    )
    config = settings.settlement_config()
    assert (config.idle_timeout_ms, config.hold_margin_ms, config.cap_grace_ms) == (
        60_000,
        7_200_000,
        30_000,
    )
    assert (config.claim_idle_ms, config.gateway_timeout_s) == (30_000, 10.0)
    assert settings.webhook_config().url == "https://cam.example/hooks"
    assert not Settings.from_env({}).webhook_config().enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TIPMETER_SETTLE_CLAIM_IDLE_MS": "5000", "TIPMETER_GATEWAY_TIMEOUT_MS": "5000"},
            "must exceed the gateway timeout",
        ),
        ({"TIPMETER_WEBHOOK_URL": "https://x"}, "WEBHOOK_SECRET"),
        # Crash points are the crash tests' own (tests/settlement/crash_worker.py).
        ({"TIPMETER_SETTLE_CRASH_POINT": "after_record"}, "unknown setting"),
        ({"TIPMETER_GATEWAY": "paypal"}, "expected one of"),
    ],
)
def test_inconsistent_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_config_checks_its_bounds() -> None:
    with pytest.raises(SettlementMisuse, match="deliveries_max"):
        SettlementConfig(deliveries_max=0)


def test_the_crash_hook_passes_every_other_checkpoint() -> None:
    hook = kill_at(Checkpoint.AFTER_RECORD)
    for point in Checkpoint:
        if point is not Checkpoint.AFTER_RECORD:
            hook(point)  # the test process is still alive


def test_the_worker_command_needs_a_redis() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    done = subprocess.run(
        [TIPMETER, "worker", "--burst"], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert b"TIPMETER_REDIS_URL" in done.stderr
