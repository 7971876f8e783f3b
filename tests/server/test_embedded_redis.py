"""The embedded redis-server: private, persistent, locked to one tipmeter, gone with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from server.embedded_redis import RedisServer, ping
from server.errors import EmbeddedRedisError
from tests.support.waiting import eventually_sync


def test_starts_on_a_private_socket_with_the_aof_on(data_dir: Path) -> None:
    with RedisServer(data_dir) as server:
        assert server.unix_path is not None
        assert server.url == f"unix://{server.unix_path}"
        assert oct(os.stat(server.unix_path).st_mode & 0o777) == "0o700"
        with redis.Redis(unix_socket_path=server.unix_path) as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.config_get("port") == {"port": "0"}
            client.set("kept", "1")
    assert not ping(unix_path=server.unix_path)
    # Data survives a restart: the append-only file is replayed.
    with RedisServer(data_dir) as server, redis.Redis(unix_socket_path=server.unix_path) as client:
        assert client.get("kept") == b"1"


def test_one_data_dir_serves_one_tipmeter(data_dir: Path) -> None:
    with RedisServer(data_dir), pytest.raises(EmbeddedRedisError, match="another tipmeter"):
        RedisServer(data_dir).start()


def test_a_missing_binary_says_what_to_do(data_dir: Path) -> None:
    with pytest.raises(EmbeddedRedisError, match="TIPMETER_REDIS_SERVER_BIN"):
        RedisServer(data_dir, binary="no-such-redis-server").start()


def test_an_executable_that_is_not_a_program_says_so(data_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "fake-redis-server"
    fake.write_text("this is not a program\n")
    fake.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match="cannot be run as redis-server"):
        RedisServer(data_dir, binary=str(fake)).start()


def test_the_data_folder_is_private_to_its_owner(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    with RedisServer(data_dir) as server, redis.Redis(unix_socket_path=server.unix_path) as r:
        r.set("k", "v")
        r.execute_command("BGREWRITEAOF")
    paths = [data_dir, *data_dir.rglob("*")]
    assert len(paths) > 3  # the lock, the log, the append-only files
    readable = {str(p): oct(p.stat().st_mode & 0o777) for p in paths if p.stat().st_mode & 0o077}
    assert readable == {}


def test_a_long_data_dir_falls_back_to_a_short_socket_path(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with RedisServer(deep) as server:
        assert server.unix_path is not None
        assert len(server.unix_path) < 100
        assert ping(unix_path=server.unix_path)


def test_redis_dies_with_the_process_that_started_it(data_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from server.embedded_redis import RedisServer
        server = RedisServer(Path({str(data_dir)!r}))
        server.start()
        print(server.unix_path, server.process.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    unix_path, redis_pid = parent.stdout.readline().split()
    parent.stdout.close()
    assert ping(unix_path=unix_path)
    parent.send_signal(signal.SIGKILL)
    parent.wait()

    def gone() -> bool:
        try:
            os.kill(int(redis_pid), 0)
        except ProcessLookupError:
            return True
        return False

    eventually_sync(gone, timeout_s=10, what="redis-server ends with the process that started it")
    # The next tipmeter on the folder starts cleanly over the stale socket.
    with RedisServer(data_dir) as server:
        assert ping(unix_path=server.unix_path)
