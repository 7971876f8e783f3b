"""The load test's settings and the driver's pure parts: no locust, no gevent in this process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.config import KNOBS, ConfigError, LoadConfig, render_markdown
from loadtest.run import parse_duration_s, read_stats, summary

DOCS = Path(__file__).parents[2] / "docs" / "loadtest.md"


def test_defaults_and_overrides() -> None:
    config = LoadConfig.from_env({"LOADTEST_RUN_ID": "abc"})
    assert (config.rooms, config.tipper_weight, config.show_weight) == (4, 4, 1)
    assert config.room_names == ("ltabc-room0", "ltabc-room1", "ltabc-room2", "ltabc-room3")
    assert config.customer("tipper", 3) == "ltabc-tipper3"
    changed = LoadConfig.from_env(
        {
            "LOADTEST_MIX": "show=2",
            "LOADTEST_TIP_RATE": "2.5",
            "LOADTEST_SHOW_KIND": "spy",
            "LOADTEST_CODEC": "json",
            "LOADTEST_TIME": "10s",  # the driver's: known, and not a knob of the users
        }
    )
    assert (changed.tipper_weight, changed.show_weight) == (0, 2)
    assert changed.tip_rate_per_s == 2.5
    assert (changed.show_kind, changed.codec) == ("spy", "json")
    assert re.fullmatch(r"[0-9a-z]+", changed.run_id)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOADTEST_TIP_RATE": "0"}, "LOADTEST_TIP_RATE='0': must be above 0.0"),
        ({"LOADTEST_TIP_RATE": "nan"}, "LOADTEST_TIP_RATE='nan': must be above"),
        ({"LOADTEST_ROOMS": "1.5"}, "LOADTEST_ROOMS='1.5': not a whole number"),
        ({"LOADTEST_ROOMS": "0"}, "LOADTEST_ROOMS='0': must be within 1..100"),
        ({"LOADTEST_MIX": "tipper=0,show=0"}, "at least one weight must be above 0"),
        ({"LOADTEST_MIX": "lurker=1"}, "write weights as tipper=N,show=N"),
        ({"LOADTEST_SHOW_KIND": "dinner"}, "must be one of private, spy, cam2cam"),
        ({"LOADTEST_CURRENCY": "usd"}, "must be an ISO-4217 code"),
        ({"LOADTEST_RUN_ID": "a-b"}, "1 to 16 letters and digits"),
        ({"LOADTEST_TIP_MIN_MINOR": "600"}, "LOADTEST_TIP_MIN_MINOR (600) is above"),
        ({"LOADTEST_TIP_RATES": "1"}, "unknown variable(s) LOADTEST_TIP_RATES"),
    ],
)
def test_bad_values_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        LoadConfig.from_env(env)
    assert message in str(refused.value)


def test_the_show_budget_covers_the_show_and_the_second_in_progress() -> None:
    config = LoadConfig(show_s=10, show_rate_minor=600)
    assert config.show_cost_minor() == 120  # 12 s at 10 a second
    assert LoadConfig(show_s=1, show_rate_minor=7).show_cost_minor() == 1  # rounded up


def test_every_knob_is_documented() -> None:
    docs = DOCS.read_text()
    block = re.search(r"<!-- knobs:begin -->\n(.*?)<!-- knobs:end -->", docs, re.S)
    assert block is not None, "docs/loadtest.md lacks the knobs markers"
    assert block.group(1) == render_markdown()
    assert len(KNOBS) == render_markdown().count("\n") - 2


@pytest.mark.parametrize(
    ("text", "seconds"), [("60s", 60), ("90", 90), ("1m30s", 90), ("2m", 120), ("1h", 3_600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "0s", "2h", "1.5s", "-3s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|a run lasts"):
        parse_duration_s(text)


def test_the_summary_reads_locusts_csv(tmp_path: Path) -> None:
    path = tmp_path / "stats.csv"
    columns = (
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    )
    path.write_text(
        f"{columns}\n"
        "ws,tip,120,0,3,3.4,1,12,0,19.8,0.0,3,4,4,5,5,6,8,11,12,12,12\n"
        ",Aggregated,120,0,3,3.4,1,12,0,19.8,0.0,3,4,4,5,5,6,8,N/A,N/A,N/A,N/A\n"
    )
    rows = read_stats(path)
    assert rows["tip"].requests == 120
    assert (rows["tip"].p50_ms, rows["tip"].p99_ms) == (3, 11)
    assert rows["Aggregated"].p99_ms == 0
    table = summary(rows)
    assert table.splitlines()[2] == "| ws | tip | 120 | 0 | 19.8 | 3 | 11 |"
    assert table.splitlines()[-1].startswith("|  | Aggregated |")


def test_the_driver_imports_neither_locust_nor_gevent() -> None:
    # pytest must never be monkey-patched: only the locust child process imports them.
    script = "import sys, loadtest.run, loadtest.config, loadtest.backend; "
    script += "print(sorted({'locust', 'gevent'} & set(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
