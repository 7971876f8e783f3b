"""The embedded PostgreSQL: a real server as a child process, run as an unprivileged user when
tipmeter is root, in a folder that user can reach, and a database that survives a restart."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from server.embedded_postgres import PostgresServer
from server.errors import EmbeddedPostgresError
from tests.support.processes import TipmeterProcess

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user")


@pytest.fixture
def fallback_root() -> Iterator[Path]:
    """A fallback folder outside pytest's private temporary folder (which is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="tipmeter-fallback-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@root_only
def test_a_data_folder_the_postgres_user_cannot_enter_moves_the_cluster(
    tmp_path: Path, fallback_root: Path
) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    data = private / "checkout" / ".tipmeter"
    server = PostgresServer(data, fallback_root=fallback_root, durable=False)
    server.start()
    try:
        assert server.user == "postgres"
        assert server.root is not None
        assert server.root.parent == fallback_root
        assert str(server.root) in (data / "postgres.location").read_text()
        assert stat.S_IMODE(server.cluster_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    finally:
        server.stop()
    again = PostgresServer(data, fallback_root=fallback_root, durable=False)
    again.start()
    try:
        assert again.root == server.root  # the same data folder finds the same cluster
        with psycopg.connect(again.url) as conn:
            row = conn.execute("SELECT n FROM kept").fetchone()
        assert row == (42,)
    finally:
        again.stop()
    assert not (server.socket_dir / ".s.PGSQL.5432").exists()


def test_missing_binaries_say_what_to_do(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path, bin_dir=str(tmp_path / "nowhere"))
    with pytest.raises(EmbeddedPostgresError, match="TIPMETER_POSTGRES_BIN_DIR"):
        server.start()


def test_two_servers_never_share_one_cluster(tmp_path: Path, fallback_root: Path) -> None:
    first = PostgresServer(tmp_path / "data", fallback_root=fallback_root, durable=False)
    first.start()
    try:
        second = PostgresServer(tmp_path / "data", fallback_root=fallback_root, durable=False)
        with pytest.raises(EmbeddedPostgresError, match="another tipmeter is using"):
            second.start()
    finally:
        first.stop()


def test_the_embedded_default_runs_its_own_postgres_and_stops_it(
    tmp_path: Path, redis_url: str
) -> None:
    """``tipmeter serve`` with no database configured: its own PostgreSQL, migrated at start,
    ready, and stopped on exit."""
    data = tmp_path / "data"
    server = TipmeterProcess(
        ["serve"],
        {
            "TIPMETER_REDIS_URL": redis_url,
            "TIPMETER_DATABASE_URL": "",
            "TIPMETER_DATA_DIR": str(data),
        },
        cwd=tmp_path,
    )
    server.start(timeout_s=90)
    try:
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
        assert "embedded postgres started" in server.log()
    finally:
        assert server.stop() == 0
    location = data / "postgres.location"
    cluster = Path(location.read_text().split()[0]) if location.exists() else data / "postgres"
    assert (cluster / "pgdata" / "PG_VERSION").exists()
    assert not (cluster / "pgdata" / "postmaster.pid").exists()  # stopped with tipmeter
    if location.exists():
        shutil.rmtree(cluster, ignore_errors=True)


def test_readiness_follows_the_database(
    tmp_path: Path, redis_url: str, fallback_root: Path
) -> None:
    postgres = PostgresServer(tmp_path / "pg", fallback_root=fallback_root, durable=False)
    postgres.start()
    try:
        server = TipmeterProcess(["migrate"], {"TIPMETER_DATABASE_URL": postgres.url}, tmp_path)
        server.start(ready_path=None)
        assert server.wait(60) == 0
        assert "schema is at version" in server.output()
        served = TipmeterProcess(
            ["serve"],
            {"TIPMETER_REDIS_URL": redis_url, "TIPMETER_DATABASE_URL": postgres.url},
            cwd=tmp_path,
        ).start()
        try:
            postgres.stop()
            down = httpx.get(f"{served.base_url}/readyz", timeout=5)
            assert (down.status_code, down.json()) == (503, {"status": "database_unavailable"})
            postgres.start()
            served.wait_for("/readyz", timeout_s=30)
        finally:
            served.stop()
    finally:
        postgres.stop()
