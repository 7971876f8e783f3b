"""A private PostgreSQL child process: the embedded default's ledger, and the tests' database.

With no ``TIPMETER_DATABASE_URL``, ``tipmeter serve`` runs its own PostgreSQL from Debian's
binaries (``/usr/lib/postgresql/<version>/bin``, or ``TIPMETER_POSTGRES_BIN_DIR``): a cluster
made once with ``initdb`` under the data folder, reachable only through a unix socket (no TCP
port, ``listen_addresses=''``) in a folder only its owner may enter, stopped when tipmeter
stops and, on Linux, told to stop by the kernel if tipmeter dies first.

PostgreSQL refuses to run as root. When tipmeter runs as root, the server runs as an
unprivileged system user (Debian's package creates ``postgres``); otherwise as the current
user, with the cluster in ``data_dir/postgres``. The data folder is private (0700, like the
embedded redis-server keeps it), and the folder the checkout sits in may be too (``/root`` is
0700), so a run-as user of its own cannot enter it: its cluster lives in a folder of its own
under :data:`FALLBACK_ROOT_DEFAULT`, named by a digest of the data folder (the same data folder
always finds the same cluster), and ``postgres.location`` in the data folder says where. Tests
use the same class with an ephemeral folder that is removed at stop.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

import psycopg

from server.children import ChildServer, stop_child
from server.embedded_redis import DATA_DIR_MODE
from server.errors import EmbeddedPostgresError

#: The system user PostgreSQL runs as when tipmeter runs as root (Debian's package makes it).
SYSTEM_USER_DEFAULT: Final = "postgres"
#: Where a cluster goes when the run-as user cannot enter the data folder.
FALLBACK_ROOT_DEFAULT: Final = Path("/var/lib/tipmeter")
#: The superuser initdb creates and tipmeter connects as; the database tipmeter uses.
ROLE: Final = "tipmeter"
DATABASE: Final = "tipmeter"
#: How long start() waits for the server to accept connections (crash recovery included).
START_TIMEOUT_S_DEFAULT: Final = 60.0
#: How long stop() waits for a fast shutdown before SIGKILL.
STOP_TIMEOUT_S_DEFAULT: Final = 30.0
#: Connections the server accepts at most.
CONNECTIONS_MAX_DEFAULT: Final = 100
#: Unix socket paths must fit in sockaddr_un (108 bytes on Linux, with the final NUL).
UNIX_PATH_MAX: Final = 100
_SOCKET_NAME: Final = ".s.PGSQL.5432"
_PR_SET_PDEATHSIG: Final = 1
_VERSION_DIR: Final = re.compile(r"\d+")


def find_bin_dir(configured: str | None = None) -> Path:
    """The folder holding ``initdb`` and ``postgres``: ``configured``, else the newest of
    Debian's ``/usr/lib/postgresql/<version>/bin``, else wherever ``PATH`` finds them."""
    candidates: list[Path] = []
    if configured:
        candidates.append(Path(configured))
    else:
        base = Path("/usr/lib/postgresql")
        if base.is_dir():
            versions = sorted(
                (p for p in base.iterdir() if _VERSION_DIR.fullmatch(p.name)),
                key=lambda p: int(p.name),
                reverse=True,
            )
            candidates += [v / "bin" for v in versions]
        found = shutil.which("postgres")
        if found is not None:
            candidates.append(Path(found).resolve().parent)
    for candidate in candidates:
        if (candidate / "postgres").is_file() and (candidate / "initdb").is_file():
            return candidate
    where = configured or "/usr/lib/postgresql/*/bin or PATH"
    raise EmbeddedPostgresError(
        f"no PostgreSQL server binaries (postgres, initdb) in {where}: run 'make install' (it "
        "installs Debian's postgresql as root), install PostgreSQL 15 or newer with your "
        "package manager, set TIPMETER_POSTGRES_BIN_DIR, or set TIPMETER_DATABASE_URL"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to send SIGINT (PostgreSQL's fast shutdown) when the parent dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class PostgresServer(ChildServer):
    """One PostgreSQL server as a child process (see the module docstring).

    ``data_dir`` is tipmeter's data folder; the cluster lives in ``data_dir/postgres`` (or
    the fallback). ``ephemeral`` puts everything in a fresh temporary folder removed at stop
    (tests). ``durable=False`` turns fsync off (tests only: a crash may lose the data).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bin_dir: str | None = None,
        run_as: str | None = None,
        fallback_root: Path = FALLBACK_ROOT_DEFAULT,
        ephemeral: bool = False,
        durable: bool = True,
        connections_max: int = CONNECTIONS_MAX_DEFAULT,
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.bin_dir_setting = bin_dir
        self.fallback_root = fallback_root
        self.ephemeral = ephemeral
        self.durable = durable
        self.connections_max = connections_max
        self.die_with_parent = die_with_parent
        self.user = run_as or (SYSTEM_USER_DEFAULT if os.geteuid() == 0 else _current_user())
        self.process: subprocess.Popen[bytes] | None = None
        self.root: Path | None = None
        self._lock: IO[str] | None = None

    # -- where things are -------------------------------------------------------------------

    @property
    def cluster_dir(self) -> Path:
        """The cluster (``PGDATA``)."""
        return self._root() / "pgdata"

    @property
    def socket_dir(self) -> Path:
        """The folder of the server's unix socket."""
        path = self._root() / "run"
        if len(str(path / _SOCKET_NAME)) <= UNIX_PATH_MAX:
            return path
        digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"tipmeter-pg-{digest}"

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self._root() / "postgres.log"

    @property
    def url(self) -> str:
        """The connection URL of the ``tipmeter`` database (unix socket, trusted owner)."""
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        """The connection URL of ``database`` on this server."""
        return f"postgresql://{ROLE}@/{database}?host={self.socket_dir}"

    def _root(self) -> Path:
        if self.root is None:
            raise EmbeddedPostgresError("the server's folder is chosen at start()")
        return self.root

    # -- the run-as user ---------------------------------------------------------------------

    def _account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.user)
        except KeyError:
            raise EmbeddedPostgresError(
                f"PostgreSQL refuses to run as root and there is no user {self.user!r} to run "
                "it as: install Debian's postgresql (it creates that user), or run tipmeter as "
                "an ordinary user"
            ) from None

    def _as_user(self) -> RunAs:
        """Who a child runs as: the run-as user when tipmeter is root, else unchanged."""
        if os.geteuid() != 0:
            return RunAs()
        account = self._account()
        return RunAs(account.pw_uid, account.pw_gid, ())

    def _give(self, path: Path) -> None:
        """Make ``path`` the run-as user's, readable by nobody else."""
        os.chmod(path, 0o700)
        if os.geteuid() == 0:
            account = self._account()
            os.chown(path, account.pw_uid, account.pw_gid)

    def _choose_root(self) -> Path:
        if self.ephemeral:
            root = Path(tempfile.mkdtemp(prefix="tipmeter-pg-"))
            self._give(root)
            return root
        # The data folder is private to tipmeter's user (as the embedded redis-server keeps
        # it): a run-as user of its own cannot enter it, and gets the fallback below.
        self.data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        self.data_dir.chmod(DATA_DIR_MODE)
        preferred = self.data_dir / "postgres"
        if self.user == _current_user():
            preferred.mkdir(exist_ok=True)
            self._give(preferred)
            return preferred
        # The run-as user cannot reach the data folder (a private home folder): keep the
        # cluster where it can, at a place derived from the data folder, and say where.
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
        self.fallback_root.mkdir(parents=True, exist_ok=True)
        # Others may pass through (not list or read): the run-as user must reach its folder.
        os.chmod(self.fallback_root, 0o711)  # noqa: S103 - traverse only, as explained
        root = self.fallback_root / f"postgres-{digest}"
        root.mkdir(exist_ok=True)
        self._give(root)
        (self.data_dir / "postgres.location").write_text(
            f"{root}\n# The {self.user} user cannot enter {self.data_dir}, so tipmeter's "
            "PostgreSQL cluster lives in the folder above.\n"
        )
        return root

    # -- life --------------------------------------------------------------------------------

    def _take_lock(self) -> None:
        lock = (self._root() / "tipmeter-postgres.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise EmbeddedPostgresError(
                f"another tipmeter is using the PostgreSQL cluster in {self._root()}; stop it "
                "or set TIPMETER_DATA_DIR to another folder"
            ) from None
        self._lock = lock

    def _initdb(self, bin_dir: Path) -> None:
        if (self.cluster_dir / "PG_VERSION").exists():
            return
        self.cluster_dir.mkdir(exist_ok=True)
        self._give(self.cluster_dir)
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.cluster_dir),
            "-U",
            ROLE,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not self.durable:
            args.append("--no-sync")
        done = subprocess.run(  # noqa: S603 - argv built here, no shell
            args,
            capture_output=True,
            check=False,
            cwd="/",
            user=self._as_user().uid,
            group=self._as_user().gid,
            extra_groups=self._as_user().extra_groups,
        )
        if done.returncode != 0:
            why = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise EmbeddedPostgresError(f"initdb failed: {' | '.join(why[-5:])}")

    def _clear_orphan(self) -> None:
        """Stop a server left running on this cluster by a tipmeter that died."""
        pid_file = self.cluster_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        with contextlib.suppress(ValueError, OSError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + STOP_TIMEOUT_S_DEFAULT
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once the process is gone
                time.sleep(0.05)

    def command_line(self, bin_dir: Path) -> list[str]:
        """The ``postgres`` command line this instance runs."""
        settings = {
            "listen_addresses": "",
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "max_connections": str(self.connections_max),
            "fsync": "on" if self.durable else "off",
            "synchronous_commit": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "timezone": "UTC",
            "log_timezone": "UTC",
        }
        args = [str(bin_dir / "postgres"), "-D", str(self.cluster_dir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        return args

    def start(self, timeout_s: float = START_TIMEOUT_S_DEFAULT) -> None:
        """Make the cluster if needed, start the server, wait until it accepts connections and
        the ``tipmeter`` database exists; raise EmbeddedPostgresError if not."""
        bin_dir = find_bin_dir(self.bin_dir_setting)
        self.root = self._choose_root()
        self._take_lock()
        try:
            self._initdb(bin_dir)
            self._clear_orphan()
            self.socket_dir.mkdir(exist_ok=True)
            self._give(self.socket_dir)
            log = self.log_path.open("ab")
            preexec = _die_with_parent if self.die_with_parent and sys.platform == "linux" else None
            self.process = subprocess.Popen(  # noqa: S603 - argv is built here, no shell
                self.command_line(bin_dir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                preexec_fn=preexec,  # safe here: called before any thread exists
                user=self._as_user().uid,
                group=self._as_user().gid,
                extra_groups=self._as_user().extra_groups,
            )
            log.close()
            self._wait_ready(timeout_s)
            self._create_database()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedPostgresError(f"postgres exited at start: {self._why()}")
            try:
                with psycopg.connect(self.url_for("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"postgres did not accept connections in {timeout_s:g} s: {self._why()}"
                    ) from None
                time.sleep(0.05)

    def _create_database(self) -> None:
        self.create_database(DATABASE)

    def create_database(self, name: str) -> str:
        """Create database ``name`` if missing (a plain identifier); return its URL."""
        if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name) is None:
            raise EmbeddedPostgresError(f"database name {name!r} is not a plain identifier")
        with psycopg.connect(self.url_for("postgres"), autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url_for(name)

    def _why(self) -> str:
        text = ""
        with contextlib.suppress(OSError, EmbeddedPostgresError):
            text = self.log_path.read_text(errors="replace")
        lines = text.strip().splitlines()
        return " | ".join(lines[-5:]) or "no output"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S_DEFAULT) -> None:
        """Stop the server (SIGINT: fast shutdown, which checkpoints); SIGKILL after a bound."""
        process, self.process = self.process, None
        stop_child(process, timeout_s, signal.SIGINT)
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        if self.ephemeral and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


@dataclass(frozen=True, slots=True)
class RunAs:
    """The ``user``, ``group`` and ``extra_groups`` of a child process (None: unchanged)."""

    uid: int | None = None
    gid: int | None = None
    extra_groups: tuple[int, ...] | None = None


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name
