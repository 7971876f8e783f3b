"""The SDK installs and imports without the server's dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = (
    "starlette",
    "uvicorn",
    "redis",
    "hiredis",
    "prometheus_client",
    "metering",
    "server",
    "settlement",
)


def test_the_sdk_imports_with_the_server_dependencies_missing() -> None:
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {BLOCKED!r}:
                    raise ImportError(f"{{name}} is not installed in this test")
                return None

        sys.meta_path.insert(0, Block())
        import clients.protocol, clients.sdk, clients.sync, clients.tickets, clients.errors
        from clients.sdk import Client
        from clients.sync import SyncClient
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_base_install_requires_only_the_sdk_dependencies() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].strip() for dep in project["dependencies"]}
    assert names == {"websockets", "orjson", "msgpack"}
