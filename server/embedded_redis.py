"""A private redis-server child process: the embedded default, and the tests' real Redis.

With no Redis configured, ``tipmeter serve`` runs its own redis-server: data in a local folder,
append-only file on (fsync every second), reachable only through a unix socket in that folder,
stopped when tipmeter stops — and, on Linux, killed by the kernel if tipmeter dies first, so no
orphan keeps the data folder. A lock file keeps two tipmeter processes from sharing one folder.

Tests use the same class with a loopback TCP port and no persistence.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Final

from server.children import ChildServer, stop_child
from server.errors import EmbeddedRedisError

#: How long start() waits for redis-server to answer PING (it may be replaying its AOF).
START_TIMEOUT_S_DEFAULT: Final = 30.0
#: How long stop() waits for a clean shutdown before SIGKILL.
STOP_TIMEOUT_S_DEFAULT: Final = 10.0
#: Unix socket paths must fit in sockaddr_un (108 bytes on Linux, with the final NUL).
UNIX_PATH_MAX: Final = 100
_PR_SET_PDEATHSIG: Final = 1


#: The data folder and everything in it are the owner's only: it holds the Redis data (tabs,
#: customers), the development keys and the socket.
DATA_DIR_MODE: Final = 0o700
#: The umask of redis-server, so the files it writes (AOF, log, socket) are 0600 / 0700.
CHILD_UMASK: Final = 0o077


def _private_child() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Make the files redis-server creates private to their owner."""
    os.umask(CHILD_UMASK)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Make the child's files private, and ask Linux to SIGTERM it when its parent dies."""
    _private_child()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(*, port: int | None = None, unix_path: str | None = None, timeout_s: float = 1) -> bool:
    """Tell whether a Redis answers PING with PONG at ``port`` or ``unix_path``."""
    try:
        if unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = unix_path
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = ("127.0.0.1", port or 0)
        with sock:
            sock.settimeout(timeout_s)
            sock.connect(target)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ChildServer):
    """One redis-server child process.

    ``port=None`` listens on a unix socket only (the embedded default); a port listens on
    127.0.0.1 only. ``persistent`` turns the append-only file on. ``cluster`` enables cluster
    mode (the node still has to be joined to a cluster).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str = "redis-server",
        port: int | None = None,
        persistent: bool = True,
        cluster: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.binary = binary
        self.port = port
        self.persistent = persistent
        self.cluster = cluster
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None
        self.unix_path: str | None = None if port is not None else self._socket_path()

    def _socket_path(self) -> str:
        path = str(self.data_dir / "redis.sock")
        if len(path) <= UNIX_PATH_MAX:
            return path
        digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:16]
        return str(Path(tempfile.gettempdir()) / f"tipmeter-{digest}.sock")

    @property
    def url(self) -> str:
        """The URL redis-py connects with."""
        if self.unix_path is not None:
            return f"unix://{self.unix_path}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def tcp_port(self) -> int:
        """The TCP port (only for an instance started with one)."""
        if self.port is None:
            raise ValueError("this redis-server listens on a unix socket only")
        return self.port

    @property
    def log_path(self) -> Path:
        """Where redis-server writes its log."""
        return self.data_dir / "redis.log"

    def _answers(self) -> bool:
        return ping(port=self.port, unix_path=self.unix_path)

    def _resolve_binary(self) -> str:
        found = shutil.which(self.binary)
        if found is None:
            raise EmbeddedRedisError(
                f"no redis-server binary {self.binary!r}: run 'make install' (it installs "
                "Redis 7 on Debian as root), install redis-server with your package manager, "
                "or set TIPMETER_REDIS_SERVER_BIN to its path"
            )
        return found

    def _take_lock(self) -> None:
        self.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        self.data_dir.chmod(DATA_DIR_MODE)  # also a folder made before (or by someone else)
        lock_fd = os.open(self.data_dir / "tipmeter.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        lock = os.fdopen(lock_fd, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise EmbeddedRedisError(
                f"another tipmeter is using {self.data_dir}; stop it or set TIPMETER_DATA_DIR "
                "to another folder"
            ) from None
        self._lock = lock

    def _clear_orphan(self) -> None:
        """Shut down a redis-server left behind on our socket by a tipmeter that died."""
        if self.unix_path is None or not os.path.exists(self.unix_path):
            return
        if self._answers():
            with contextlib.suppress(OSError):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                with sock:
                    sock.settimeout(5)
                    sock.connect(self.unix_path)
                    sock.sendall(b"SHUTDOWN\r\n")
                    sock.recv(64)
            deadline = time.monotonic() + STOP_TIMEOUT_S_DEFAULT
            while self._answers() and time.monotonic() < deadline:
                time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.unix_path)

    def command_line(self, binary: str) -> list[str]:
        """The redis-server command line this instance runs."""
        args = [binary, "--dir", str(self.data_dir), "--logfile", str(self.log_path)]
        args += ["--daemonize", "no", "--save", "", "--databases", "16"]
        if self.unix_path is not None:
            args += ["--port", "0", "--unixsocket", self.unix_path, "--unixsocketperm", "700"]
        else:
            args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                "2000",
            ]
        return args

    def start(self, timeout_s: float = START_TIMEOUT_S_DEFAULT) -> None:
        """Start redis-server and return once it answers PING; raise EmbeddedRedisError if not."""
        binary = self._resolve_binary()
        self._take_lock()
        try:
            self._clear_orphan()
            linux = self.die_with_parent and sys.platform == "linux"
            preexec = _die_with_parent if linux else _private_child
            try:
                self.process = subprocess.Popen(  # noqa: S603 - argv is built here, no shell
                    self.command_line(binary),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    preexec_fn=preexec,  # safe here: called before any thread exists
                )
            except OSError as exc:  # not a program (exec format error), or not allowed
                raise EmbeddedRedisError(
                    f"{binary!r} cannot be run as redis-server ({exc.strerror or exc}); set "
                    "TIPMETER_REDIS_SERVER_BIN to a redis-server binary"
                ) from None
            deadline = time.monotonic() + timeout_s
            while not self._answers():
                if self.process.poll() is not None:
                    raise EmbeddedRedisError(f"redis-server exited at start: {self._why()}")
                if time.monotonic() > deadline:
                    raise EmbeddedRedisError(f"redis-server did not answer in {timeout_s:g} s")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def _why(self) -> str:
        stderr = b""
        if self.process is not None and self.process.stderr is not None:
            stderr = self.process.stderr.read() or b""
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        lines = (stderr.decode(errors="replace") + log).strip().splitlines()
        return " | ".join(lines[-5:]) or "no output"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S_DEFAULT) -> None:
        """Stop redis-server cleanly (SIGTERM makes it flush its AOF); SIGKILL after a bound."""
        process, self.process = self.process, None
        stop_child(process, timeout_s, signal.SIGTERM)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def kill(self) -> None:
        """SIGKILL redis-server (for crash tests); the lock is released."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.stop()
