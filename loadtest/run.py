"""``make loadtest``: start the product, run locust headless against it, keep its reports.

    .venv/bin/python -m loadtest.run --time 60s --users 50 --spawn-rate 10

Starts a real ``tipmeter serve`` on a free port (with its embedded redis-server in a temporary
folder, or the Redis of ``TIPMETER_REDIS_URL``), with a ticket secret and an API key it shares
with the load generator; runs ``locust --headless`` with :mod:`loadtest.locustfile` for the
given time; writes locust's CSV files and HTML report to the reports folder; prints a summary
and where the reports are; stops the server — also when the run fails or is interrupted (Ctrl-C,
SIGTERM). With ``--host URL`` it runs against that server instead and starts nothing.

Every setting has a ``LOADTEST_*`` variable (docs/loadtest.md); they are checked before
anything starts. The exit status is locust's: 1 when any round trip failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import http.client
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Final, TypeVar

from loadtest.config import ConfigError, LoadConfig
from server.children import stop_child
from server.embedded_redis import free_port

LOCUSTFILE: Final = Path(__file__).with_name("locustfile.py")
#: Names of the files in the reports folder.
CSV_PREFIX: Final = "tipmeter"
HTML_NAME: Final = "report.html"
SERVER_LOG_NAME: Final = "server.log"
#: Bounds of the driver's settings.
RUN_S_MAX: Final = 3_600
USERS_MAX: Final = 10_000
SPAWN_RATE_MAX: Final = 1_000.0
#: How long the server may take to answer /readyz, and to stop.
READY_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
#: Locust's time beyond the run's to stop its users and write its reports.
LOCUST_GRACE_S: Final = 60.0
_PR_SET_PDEATHSIG: Final = 1
_DURATION: Final = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?")


def parse_duration_s(text: str) -> int:
    """Seconds of a locust duration (``90``, ``90s``, ``1m30s``, ``1h``); ValueError if not one
    or out of 1 … RUN_S_MAX."""
    match = _DURATION.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"{text!r} is not a duration such as 60s, 2m or 1m30s")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    total = hours * 3_600 + minutes * 60 + seconds
    if not 1 <= total <= RUN_S_MAX:
        raise ValueError(f"{text!r}: a run lasts 1 s to {RUN_S_MAX} s")
    return total


@dataclass(frozen=True, slots=True)
class Row:
    """One line of locust's ``_stats.csv``: a request name's figures (milliseconds)."""

    type: str
    name: str
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    average_ms: float


def read_stats(path: Path) -> dict[str, Row]:
    """Locust's stats CSV by request name (``Aggregated`` included)."""
    rows: dict[str, Row] = {}
    with path.open(newline="") as handle:
        for raw in csv.DictReader(handle):
            rows[raw["Name"]] = Row(
                type=raw["Type"],
                name=raw["Name"],
                requests=int(raw["Request Count"]),
                failures=int(raw["Failure Count"]),
                requests_per_s=float(raw["Requests/s"]),
                p50_ms=_figure(raw["50%"]),
                p99_ms=_figure(raw["99%"]),
                average_ms=float(raw["Average Response Time"]),
            )
    return rows


def _figure(text: str) -> float:
    return float(text) if text not in ("", "N/A") else 0.0


def summary(rows: Mapping[str, Row]) -> str:
    """The figures of a run as a Markdown table."""
    lines = [
        "| type | name | requests | failures | per s | p50 ms | p99 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ordered = sorted(rows.values(), key=lambda r: (r.name == "Aggregated", r.type, r.name))
    lines += [
        f"| {row.type} | {row.name} | {row.requests} | {row.failures} | "
        f"{row.requests_per_s:.1f} | {row.p50_ms:g} | {row.p99_ms:g} |"
        for row in ordered
    ]
    return "\n".join(lines)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child if the driver dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(
    argv: list[str], env: Mapping[str, str], log: IO[bytes] | None = None
) -> subprocess.Popen[bytes]:
    """A child in its own session (a Ctrl-C reaches the driver only, which stops the children
    in order: locust, then the server), which Linux stops if the driver dies. Its output goes
    to ``log``, or to the driver's."""
    return subprocess.Popen(
        argv,
        env=dict(env),
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,
        # Safe here: the driver starts no thread.
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


@contextlib.contextmanager
def product(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """A ``tipmeter serve`` on a free port for the duration: its base URL. Stopped (SIGTERM,
    then SIGKILL) on the way out, however the block ends."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        data_dir = tempfile.mkdtemp(prefix="tipmeter-loadtest-")
        stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        server_env = {
            **env,
            "TIPMETER_HOST": "127.0.0.1",
            "TIPMETER_PORT": str(port),
            "TIPMETER_DATA_DIR": data_dir,
            "TIPMETER_LOG_LEVEL": env.get("TIPMETER_LOG_LEVEL", "warning"),
            "TIPMETER_DRAIN_DELAY_S": env.get("TIPMETER_DRAIN_DELAY_S", "0"),
        }
        log = stack.enter_context(log_path.open("ab"))
        tipmeter = str(Path(sys.executable).with_name("tipmeter"))
        server = _spawn([tipmeter, "serve"], server_env, log)
        stack.callback(stop_child, server, STOP_TIMEOUT_S, signal.SIGTERM)
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(server, port, log_path)
        yield base_url


def _wait_ready(server: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    """Return once the server answers ``/readyz`` with 200 (Redis answers, scripts loaded)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2_000:]
            raise RuntimeError(f"tipmeter serve exited with {server.returncode}:\n{tail}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass  # not listening yet
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"tipmeter serve did not answer /readyz in {READY_TIMEOUT_S:g} s")


def locust_argv(
    host: str, users: int, spawn_rate: float, run_time: str, reports: Path
) -> list[str]:
    """The locust command line of a headless run writing CSV and HTML to ``reports``."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        host,
        "--users",
        str(users),
        "--spawn-rate",
        f"{spawn_rate:g}",
        "--run-time",
        run_time,
        "--csv",
        str(reports / CSV_PREFIX),
        "--html",
        str(reports / HTML_NAME),
        "--only-summary",
    ]


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the run like Ctrl-C does: the children are stopped on the way out."""
    raise KeyboardInterrupt


def run(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the load test; return locust's exit status (2 for bad settings)."""
    env = dict(os.environ if env is None else env)
    parser = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__)
    parser.add_argument("--time", default=env.get("LOADTEST_TIME", "60s"), help="run time (60s)")
    parser.add_argument("--users", default=env.get("LOADTEST_USERS", "50"), help="users (50)")
    parser.add_argument(
        "--spawn-rate", default=env.get("LOADTEST_SPAWN_RATE", "10"), help="users started a second"
    )
    parser.add_argument(
        "--reports", default=env.get("LOADTEST_REPORTS", "reports/loadtest"), help="folder"
    )
    parser.add_argument("--host", help="a running server's URL: start none")
    args = parser.parse_args(argv)
    try:
        run_s = parse_duration_s(args.time)
        users = _bounded(int, args.users, 1, USERS_MAX, "--users (LOADTEST_USERS)")
        spawn_rate = _bounded(
            float, args.spawn_rate, 0.001, SPAWN_RATE_MAX, "--spawn-rate (LOADTEST_SPAWN_RATE)"
        )
        config = LoadConfig.from_env(env)
        if users <= config.rooms:
            raise ConfigError(
                f"--users ({users}) must exceed LOADTEST_ROOMS ({config.rooms}): the first "
                f"{config.rooms} users are the rooms' models"
            )
    except (ValueError, ConfigError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    reports = Path(args.reports)
    reports.mkdir(parents=True, exist_ok=True)
    for stale in reports.glob(f"{CSV_PREFIX}_*.csv"):
        stale.unlink()
    env["LOADTEST_RUN_ID"] = config.run_id
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with contextlib.ExitStack() as stack:
            if args.host:
                host = args.host
            else:
                # The generator plays the site's backend: it shares the server's keys, fresh
                # for this run unless the environment sets them.
                env.setdefault("TIPMETER_TICKET_SECRETS", secrets.token_urlsafe(32))
                env.setdefault("TIPMETER_API_KEYS", f"lt_{secrets.token_urlsafe(32)}")
                print(f"loadtest: starting tipmeter (log: {reports / SERVER_LOG_NAME})")
                host = stack.enter_context(product(env, reports / SERVER_LOG_NAME))
            print(
                f"loadtest: locust on {host} for {run_s} s: {users} users ({config.rooms} "
                f"models), seed {config.seed}, run {config.run_id}",
                flush=True,
            )
            locust = _spawn(locust_argv(host, users, spawn_rate, args.time, reports), env)
            # Stopped before the server (the stack unwinds in reverse); SIGTERM makes locust
            # stop its users and still write its reports.
            stack.callback(stop_child, locust, LOCUST_GRACE_S, signal.SIGTERM)
            status = locust.wait(run_s + LOCUST_GRACE_S)
    except subprocess.TimeoutExpired:
        print("loadtest: locust did not finish in time; stopped", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("loadtest: interrupted; stopped", file=sys.stderr)
        status = 130
    except RuntimeError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    stats = reports / f"{CSV_PREFIX}_stats.csv"
    if stats.exists():
        print(summary(read_stats(stats)))
        print(f"loadtest: reports in {reports}/ ({CSV_PREFIX}_stats.csv, {HTML_NAME} …)")
    else:
        print(f"loadtest: no report was written (logs in {reports}/)", file=sys.stderr)
    return status


N = TypeVar("N", int, float)


def _bounded(kind: type[N], text: str, low: N, high: N, what: str) -> N:
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{what} is not a number: {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be within {low:g}..{high:g}")
    return value


def main() -> None:
    """``python -m loadtest.run``."""
    sys.exit(run())


if __name__ == "__main__":
    main()
