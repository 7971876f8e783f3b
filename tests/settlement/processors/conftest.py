"""Processes the processor tests talk to: the Segpay Post Pay test process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.embedded_redis import free_port

#: The Post Pay price point the test process accepts.
ETICKET_ID = "109595:13925"


@dataclass
class SegpayProcess:
    """``python -m settlement.processors.segpay_emulator`` on a loopback port."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The base URL (what ``…_URL`` is set to)."""
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, str]]:
        """What it received, in order."""
        found: list[dict[str, str]] = httpx.get(self.url + "/emulator/requests").json()["requests"]
        return found


def start_segpay(
    log_dir: Path, allow: str = "127.0.0.1", timeout_s: float = 20, postback: str | None = None
) -> SegpayProcess:
    """Start the Segpay test process (posting postbacks to ``postback``, if given); wait until
    it answers (fail with its log if it dies)."""
    port = free_port()
    log = (log_dir / f"segpay-{port}.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "settlement.processors.segpay_emulator",
            "--port",
            str(port),
            "--eticketid",
            ETICKET_ID,
            "--allow",
            allow,
            *(["--postback", postback] if postback else []),
        ],
        stdout=log,
        stderr=log,
    )
    log.close()
    started = SegpayProcess(port, process)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((log_dir / f"segpay-{port}.log").read_text())
        try:
            if httpx.get(started.url + "/emulator/requests", timeout=2).status_code == 200:
                return started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the Segpay test process did not answer in {timeout_s} s")


def stop_segpay(started: SegpayProcess) -> None:
    """Terminate it and wait."""
    started.process.terminate()
    try:
        started.process.wait(10)
    except subprocess.TimeoutExpired:
        started.process.kill()
        started.process.wait()


def running_segpay(tmp_path: Path) -> Iterator[SegpayProcess]:
    """A Segpay Post Pay test process, stopped when the fixture that yields from this ends."""
    started = start_segpay(tmp_path)
    try:
        yield started
    finally:
        stop_segpay(started)


@pytest.fixture
def segpay(tmp_path: Path) -> Iterator[SegpayProcess]:
    """A Segpay Post Pay test process of the test's own."""
    yield from running_segpay(tmp_path)
