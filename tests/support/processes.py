"""Real ``tipmeter`` processes on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from server.embedded_redis import free_port

VENV_BIN = Path(sys.executable).parent


class TipmeterProcess:
    """``tipmeter <command>`` as a child process, with its environment and its log captured."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], cwd: Path, port: int | None = None
    ) -> None:
        self.port = port if port is not None else free_port()
        self.args = args
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")},
            "TIPMETER_PORT": str(self.port),
            **env,
        }
        self.cwd = cwd
        self.log_path = cwd / f"tipmeter-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Where the server listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str | None = "/readyz", timeout_s: float = 30) -> TipmeterProcess:
        """Start the process; wait until ``ready_path`` answers 200 (unless None)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "tipmeter"), *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        if ready_path is not None:
            self.wait_for(ready_path, timeout_s)
        return self

    def wait_for(self, path: str, timeout_s: float = 30, status: int = 200) -> httpx.Response:
        """Poll ``path`` until it answers ``status``; fail with the log if the process dies."""
        deadline = time.monotonic() + timeout_s
        last: Exception | httpx.Response | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"tipmeter exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                response = httpx.get(self.base_url + path, timeout=2)
                if response.status_code == status:
                    return response
                last = response
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(
            f"{path} did not answer {status} in {timeout_s} s ({last!r}):\n{self.log()}"
        )

    def log(self) -> str:
        """Everything the process wrote."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 30) -> int:
        """Wait for the process to exit; return its status."""
        assert self.process is not None
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = 30) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; return the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
