"""The locust load test, run for real: the driver starts tipmeter (with its own redis-server) and
locust headless as child processes — never gevent inside pytest — and leaves its CSV report."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.run import CSV_PREFIX, HTML_NAME, read_stats

#: A handful of users for a few seconds: one room (its model), three tippers, two in shows.
SMOKE_ENV = {
    "LOADTEST_SEED": "7",
    "LOADTEST_ROOMS": "1",
    "LOADTEST_MIX": "tipper=3,show=2",
    "LOADTEST_TIP_RATE": "2",
    "LOADTEST_SHOW_S": "3",
    "LOADTEST_SHOW_PAUSE_S": "0.5",
}


def driver(
    args: list[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """``python -m loadtest.run`` with ``env`` alone of the caller's settings."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TIPMETER_", "LOADTEST_"))
    }
    return subprocess.run(
        [sys.executable, "-m", "loadtest.run", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


@pytest.mark.slow
def test_a_short_run_reports_tips_shows_and_deliveries(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = driver(
        ["--time", "7s", "--users", "6", "--spawn-rate", "6", "--reports", str(reports)],
        SMOKE_ENV,
        timeout_s=90,
    )
    output = done.stdout + done.stderr
    assert f"reports in {reports}/" in output, output
    assert (reports / HTML_NAME).exists()
    rows = read_stats(reports / f"{CSV_PREFIX}_stats.csv")
    # Tips: acknowledged, none refused (the tippers raise their caps before they run out).
    assert rows["tip"].type == "ws"
    assert rows["tip"].requests > 0
    assert rows["tip"].failures == 0, (reports / f"{CSV_PREFIX}_failures.csv").read_text()
    # Both viewers in shows started one; every tip reached the room's model.
    assert rows["session_start"].requests >= 2
    assert rows["session_start"].failures == 0
    assert rows["subscribe"].requests == 1
    assert rows["tip_delivered"].type == "push"
    assert rows["tip_delivered"].requests > 0
    assert rows["tip_delivered"].failures == 0
    # A show's billing ticks arrive a second apart.
    assert 900 <= rows["session_tick"].p50_ms <= 1_100
    # The server started for the run is stopped.
    port = re.search(r"locust on http://127\.0\.0\.1:(\d+)", output)
    assert port is not None, output
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", int(port.group(1)))) != 0


def test_bad_settings_stop_the_driver_before_anything_starts(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    done = driver(["--reports", str(reports)], {"LOADTEST_TIP_RATE": "0"}, timeout_s=30)
    assert done.returncode == 2
    assert "LOADTEST_TIP_RATE='0': must be above 0.0" in done.stderr
    assert not reports.exists()
    few = driver(["--users", "4", "--reports", str(reports)], {}, timeout_s=30)
    assert few.returncode == 2
    assert "--users (4) must exceed LOADTEST_ROOMS (4)" in few.stderr
    assert driver(["--time", "soon"], {}, timeout_s=30).returncode == 2
