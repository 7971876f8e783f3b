"""Real ``tipmeter`` processes on loopback, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.tickets import Role, mint
from server.embedded_redis import free_port
from tests.support import postgres
from tests.support.redis_procs import start_standalone

VENV_BIN = Path(sys.executable).parent
#: How long a process may take to get ready: generous, because a shared two-core machine under
#: load starts Python processes slowly (a ready one is used at once anyway).
START_TIMEOUT_S = 90.0

#: The keys every test server shares (as a deployment's processes would).
TICKET_SECRET = "test-ticket-secret-0123456789abcdefghij"
API_KEY = "test-api-key-0123456789abcdefghijklmn"
#: Generous limits, so that tests of other things are not rate-limited.
TEST_ENV = {
    "TIPMETER_TICKET_SECRETS": TICKET_SECRET,
    "TIPMETER_API_KEYS": API_KEY,
    "TIPMETER_TIPS_PER_S_MAX": "1000",
    "TIPMETER_TIPS_BURST_MAX": "1000",
    "TIPMETER_FRAMES_PER_S_MAX": "5000",
    "TIPMETER_DRAIN_DELAY_S": "0",
    # The in-process sandbox keeps its holds in the server's memory, so the server settles.
    "TIPMETER_WORKER": "on",
}


def ticket(
    role: Role,
    subject: str,
    *,
    currency: str = "",
    name: str = "",
    ttl_ms: int = 60_000,
    now_ms: int | None = None,
) -> str:
    """Mint a ticket as the cam-site backend would, with the test servers' secret."""
    import time

    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    return mint(
        TICKET_SECRET.encode(),
        issuer="tipmeter",
        role=role,
        subject=subject,
        now_ms=now,
        ttl_ms=ttl_ms,
        name=name,
        currency=currency,
    )


class TipmeterProcess:
    """``tipmeter <command>`` as a child process, with its environment and its log captured."""

    def __init__(
        self, args: list[str], env: Mapping[str, str], cwd: Path, port: int | None = None
    ) -> None:
        self.port = port if port is not None else free_port()
        self.args = args
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")},
            **TEST_ENV,
            "TIPMETER_PORT": str(self.port),
            **env,
        }
        # Each process its own data folder (the in-process sandbox's journal is locked to one
        # process), as each host of a deployment has.
        self.env.setdefault("TIPMETER_DATA_DIR", str(cwd / f"data-{self.port}"))
        if "TIPMETER_DATABASE_URL" not in self.env and args[:1] != ["sandbox-gateway"]:
            # A fresh database on the session's PostgreSQL, as a deployment's would be.
            self.env["TIPMETER_DATABASE_URL"] = postgres.fresh_database("srv")
        self.cwd = cwd
        self.log_path = cwd / f"tipmeter-{self.port}.log"
        self.out_path = cwd / f"tipmeter-{self.port}.out"
        self.process: subprocess.Popen[bytes] | None = None
        self._openapi: dict[str, Any] | None = None

    @property
    def base_url(self) -> str:
        """Where the server listens."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """The server's WebSocket endpoint."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(
        self, ready_path: str | None = "/readyz", timeout_s: float = START_TIMEOUT_S
    ) -> TipmeterProcess:
        """Start the process; wait until ``ready_path`` answers 200 (unless None). A process
        that does not get ready is stopped before the failure is raised (none outlives it)."""
        log = self.log_path.open("ab")
        out = self.out_path.open("ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "tipmeter"), *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=out,
            stderr=log,
        )
        log.close()
        out.close()
        if ready_path is not None:
            try:
                self.wait_for(ready_path, timeout_s)
            except BaseException:
                self.stop(timeout_s=5)
                raise
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
        """What the process wrote to standard error (its JSON log)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def openapi(self) -> dict[str, Any]:
        """The process's ``/openapi.json`` (read once)."""
        if self._openapi is None:
            self._openapi = httpx.get(f"{self.base_url}/openapi.json", timeout=10).json()
        return self._openapi

    def problems(self, lines_max: int = 40) -> str:
        """The last ``lines_max`` warnings and errors of the log, each cut to 400 characters."""
        found = [
            line[:400]
            for line in self.log().splitlines()
            if '"level":"warning"' in line or '"level":"error"' in line
        ]
        return "\n".join(found[-lines_max:])

    def output(self) -> str:
        """What the process wrote to standard output."""
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

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


@contextmanager
def logs_on_failure(*servers: TipmeterProcess) -> Iterator[None]:
    """Print the servers' warnings and errors if the block fails (pytest shows what a failed
    test printed): a failure under a loaded CI machine is read from its report."""
    try:
        yield
    except BaseException:
        for server in servers:
            print(f"--- {' '.join(server.args)} on port {server.port}: warnings and errors ---")
            print(server.problems())
        raise


def connected_to(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to ``port`` on loopback
    (Linux: its socket descriptors, looked up in ``/proc/net/tcp``)."""
    inodes = set()
    fds = Path(f"/proc/{pid}/fd")
    try:
        for fd in fds.iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    except (FileNotFoundError, ProcessLookupError):
        return False  # the process is gone (or a descriptor closed under us: ask again)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)  # the header
            for row in rows:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                established = fields[3] == "01"
                if established and remote_port == port and fields[9] in inodes:
                    return True
    return False


@contextmanager
def serving(
    tmp_path_factory: pytest.TempPathFactory, name: str, env: Mapping[str, str] | None = None
) -> Iterator[TipmeterProcess]:
    """A server (``tipmeter serve``, with ``env`` on top) on a Redis of its own for one test
    module; both stopped after, even when the module's set-up inside fails."""
    redis = start_standalone(tmp_path_factory.mktemp(f"{name}-redis"))
    process = TipmeterProcess(
        ["serve"], {"TIPMETER_REDIS_URL": redis.url, **(env or {})}, tmp_path_factory.mktemp(name)
    ).start()
    try:
        yield process
    finally:
        process.stop()
        redis.stop()
