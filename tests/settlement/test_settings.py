"""Settlement's settings: read from TIPMETER_* variables, checked for consistency."""

from __future__ import annotations

import os
import subprocess

import pytest

from server.config import Settings
from server.errors import ConfigError
from settlement.config import CrashPoint, SettlementConfig, crash_if
from settlement.errors import SettlementMisuse
from tests.settlement.crash_support import TIPMETER


def test_settings_fill_the_settlement_config() -> None:
    settings = Settings.from_env(
        {
            "TIPMETER_SETTLE_IDLE_TIMEOUT_MS": "60000",
            "TIPMETER_SETTLE_HOLD_MARGIN_MS": "7200000",
            "TIPMETER_SETTLE_CAP_GRACE_MS": "30000",
            "TIPMETER_SETTLE_CLAIM_IDLE_MS": "30000",
            "TIPMETER_GATEWAY_TIMEOUT_MS": "10000",
            "TIPMETER_SETTLE_CRASH_POINT": "after_record",
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
    assert config.crash_point is CrashPoint.AFTER_RECORD
    assert settings.webhook_config().url == "https://cam.example/hooks"
    assert Settings.from_env({}).settlement_config().crash_point is None  # inert by default
    assert not Settings.from_env({}).webhook_config().enabled


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TIPMETER_SETTLE_CLAIM_IDLE_MS": "5000", "TIPMETER_GATEWAY_TIMEOUT_MS": "5000"},
            "must exceed the gateway timeout",
        ),
        ({"TIPMETER_WEBHOOK_URL": "https://x"}, "WEBHOOK_SECRET"),
        ({"TIPMETER_SETTLE_CRASH_POINT": "somewhere"}, "expected one of"),
        ({"TIPMETER_GATEWAY": "paypal"}, "expected one of"),
    ],
)
def test_inconsistent_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_config_checks_its_bounds() -> None:
    with pytest.raises(SettlementMisuse, match="deliveries_max"):
        SettlementConfig(deliveries_max=0)


def test_no_crash_point_is_inert() -> None:
    for point in CrashPoint:
        crash_if(None, point)  # the test process is still alive
    crash_if(CrashPoint.AFTER_RECORD, CrashPoint.BEFORE_GATEWAY)


def test_the_worker_command_needs_a_redis() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    done = subprocess.run(
        [TIPMETER, "worker", "--burst"], env=env, capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert b"TIPMETER_REDIS_URL" in done.stderr
