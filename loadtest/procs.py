"""Child processes for benchmarks: servers started, waited for, measured and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import orjson

VENV_BIN: Final = Path(sys.executable).parent
CLOCK_TICKS_PER_S: Final = os.sysconf("SC_CLK_TCK")
PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE")


class Child:
    """A server process on 127.0.0.1:``port``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_listening(self, timeout_s: float = 60) -> None:
        """Return once the port accepts connections; raise if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args!r} exited:\n{self.log.read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise TimeoutError(f"port {self.port} did not open")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S

    def rss_bytes(self) -> int:
        """Resident memory of the process."""
        pages = int(Path(f"/proc/{self.process.pid}/statm").read_text().split()[1])
        return pages * PAGE_BYTES

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tipmeter(env: Mapping[str, str], port: int, log: Path) -> Child:
    """``tipmeter serve`` with ``env`` (and a data folder of its own beside ``log``)."""
    own = {"TIPMETER_PORT": str(port), "TIPMETER_DATA_DIR": str(log.parent / f"data-{port}")}
    return Child([str(VENV_BIN / "tipmeter"), "serve"], {**env, **own}, port, log)


def baseline(redis_url: str, port: int, log: Path) -> Child:
    """The baseline server."""
    argv = [
        sys.executable,
        "-m",
        "loadtest.baseline",
        "--port",
        str(port),
        "--redis-url",
        redis_url,
    ]
    return Child(argv, {}, port, log)


def dumps(obj: object) -> str:
    """JSON for reports."""
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
