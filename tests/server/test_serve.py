"""`tipmeter serve` as a user runs it: real processes on loopback."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from server.embedded_redis import RedisServer, ping
from tests.support.processes import TipmeterProcess
from tests.support.redis_procs import start_standalone
from tests.support.waiting import eventually_sync


def test_the_embedded_default_runs_its_own_redis_and_stops_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = TipmeterProcess(["serve"], {"TIPMETER_DATA_DIR": str(data)}, cwd=tmp_path).start()
    try:
        ready = httpx.get(f"{server.base_url}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        assert httpx.get(f"{server.base_url}/livez").json() == {"status": "alive"}
        socket_path = str(data.resolve() / "redis.sock")
        with redis.Redis(unix_socket_path=socket_path) as client:
            assert client.config_get("appendonly")["appendonly"] == "yes"
            client.set("survives", "restart")
    finally:
        assert server.stop() == 0
    assert not ping(unix_path=socket_path)
    assert any(data.glob("appendonly*")), "the append-only file is in the data folder"
    # The log is JSON lines; standard output says how to connect; the data survives a restart.
    assert all(line.startswith("{") for line in server.log().splitlines() if line.strip())
    assert "tipmeter is running at" in server.output()
    assert "viewer ticket" in server.output()
    again = TipmeterProcess(["serve"], {"TIPMETER_DATA_DIR": str(data)}, cwd=tmp_path).start()
    try:
        with redis.Redis(unix_socket_path=socket_path) as client:
            assert client.get("survives") == b"restart"
    finally:
        again.stop()


def test_a_configured_url_is_used_as_is(tmp_path: Path, redis_url: str) -> None:
    server = TipmeterProcess(
        ["serve"],
        {"TIPMETER_REDIS_URL": redis_url, "TIPMETER_DATA_DIR": str(tmp_path / "unused")},
        cwd=tmp_path,
    ).start()
    try:
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
        # No redis-server of its own: the data folder holds no socket and no append-only file
        # (only the in-process sandbox's journal).
        unused = tmp_path / "unused"
        assert not (unused / "redis.sock").exists()
        assert not list(unused.glob("appendonly*"))
    finally:
        server.stop()


@pytest.mark.slow
def test_cluster_nodes_are_used_as_is(tmp_path: Path, cluster_nodes: tuple[str, ...]) -> None:
    server = TipmeterProcess(
        ["serve"], {"TIPMETER_REDIS_CLUSTER_NODES": ",".join(cluster_nodes)}, cwd=tmp_path
    ).start()
    try:
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
    finally:
        server.stop()


def test_readiness_follows_redis(tmp_path: Path) -> None:
    own: RedisServer = start_standalone(tmp_path)
    server = TipmeterProcess(["serve"], {"TIPMETER_REDIS_URL": own.url}, cwd=tmp_path).start()
    try:
        with redis.Redis(port=own.tcp_port) as client:
            client.script_flush()
        # A Redis that lost its scripts gets them back from the readiness probe.
        assert httpx.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
        own.kill()
        down = server.wait_for("/readyz", status=503)
        assert down.json() == {"status": "redis_unavailable"}
        assert httpx.get(f"{server.base_url}/livez").status_code == 200
    finally:
        server.stop()
        own.stop()


def test_a_bad_setting_stops_the_command_with_its_name(tmp_path: Path) -> None:
    server = TipmeterProcess(["serve"], {"TIPMETER_PORT": "http"}, cwd=tmp_path, port=1)
    server.env["TIPMETER_PORT"] = "http"
    server.start(ready_path=None)
    assert server.wait() == 2
    assert "TIPMETER_PORT='http'" in server.log()


def test_sigterm_exits_cleanly(tmp_path: Path) -> None:
    server = TipmeterProcess(
        ["serve"], {"TIPMETER_DATA_DIR": str(tmp_path / "d")}, cwd=tmp_path
    ).start()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_the_embedded_default_settles_what_its_introduction_says(tmp_path: Path) -> None:
    """`make run` runs a settlement worker in the server: the printed commands settle the demo
    tab, and its statement shows how the settlement ended."""
    server = TipmeterProcess(
        ["serve"], {"TIPMETER_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path
    ).start()
    try:
        output = server.output()
        settle = re.search(r"curl -s -X POST (\S+/settle) -H 'Authorization: Bearer (\S+)'", output)
        assert settle is not None, output
        url, key = settle.groups()
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.post(url, headers=headers).status_code == 202
        statement_url = url.removesuffix("/settle") + "/statement"
        assert f"curl -s {statement_url}" in output
        eventually_sync(
            lambda: (
                httpx.get(statement_url, headers=headers).json()["state"] in ("settled", "voided")
            ),
            what="the demo tab settles",
        )
        statement = httpx.get(statement_url, headers=headers).json()
        # Nothing was spent on the demo tab: the hold is released, nothing captured.
        assert (statement["state"], statement["outcome"]) == ("voided", "voided")
        assert statement["captured_minor"] == statement["total_minor"] == 0
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        server = TipmeterProcess(
            ["serve"], {"TIPMETER_DATA_DIR": str(data)}, cwd=tmp_path, port=port
        )
        server.start(ready_path=None)
        assert server.wait() == 1
    assert server.output() == ""  # no credentials of a server that is not running
    last = server.log().strip().splitlines()[-1]
    assert last == (
        f"tipmeter: port {port} on 127.0.0.1 is in use (another tipmeter?): stop it, or set "
        "TIPMETER_PORT (or --port) to a free port"
    )
    assert "Traceback" not in server.log()
    assert not any(data.glob("appendonly*")), "nothing was started"


def _claims(ticket: str) -> dict[str, Any]:
    payload = ticket.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_the_banner_tells_the_truth_and_its_readme_example_runs(tmp_path: Path) -> None:
    server = TipmeterProcess(
        ["serve"], {"TIPMETER_DATA_DIR": str(tmp_path / "data")}, cwd=tmp_path
    ).start()
    try:
        eventually_sync(lambda: "model ticket:" in server.output(), what="the banner")
        banner = server.output()
        assert "valid for 300 s" in banner
        viewer = re.search(r"viewer ticket:\s+(v1\.\S+)", banner)
        model = re.search(r"model ticket:\s+(v1\.\S+)", banner)
        assert viewer is not None, banner
        assert model is not None, banner
        for found in (viewer, model):
            claims = _claims(found.group(1))
            assert claims["exp"] - claims["iat"] == 300_000
        assert '"role": "model", "subject": "demo-model"' in banner
        # The README's example, as written, with the two bare tickets of the banner.
        readme = (Path(__file__).parents[2] / "README.md").read_text()
        section = readme.split("## Connect a client", 1)[1]
        example = re.search(r"```python\n(.*?)```", section, flags=re.S)
        assert example is not None
        script = tmp_path / "tip.py"
        script.write_text(example.group(1))
        run = subprocess.run(
            [sys.executable, str(script), viewer.group(1), model.group(1)],
            env={**os.environ, "TIPMETER_WS_URL": server.ws_url},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "applied 4750"
    assert "RoomEvent" in lines[1]
    assert "'amount_minor': 250" in lines[1]


def test_make_names_a_missing_redis_server_bin_instead_of_installing(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "redis-server")
    run = subprocess.run(
        ["make", "--no-print-directory", "redis-server"],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "TIPMETER_REDIS_SERVER_BIN": missing},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
    assert f"TIPMETER_REDIS_SERVER_BIN={missing}: no such program" in run.stderr
    assert "apt-get" not in run.stdout
    assert "installing" not in run.stdout
