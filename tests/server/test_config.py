"""Settings: every TIPMETER_* variable parsed, checked, and documented in the README."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metering.store import Replication
from server.config import VARIABLES, Settings, render_markdown
from server.errors import ConfigError
from server.setting import METADATA_KEY, Variable, is_set, typed

README = Path(__file__).parents[2] / "README.md"


def test_defaults_are_the_embedded_default() -> None:
    settings = Settings.from_env({})
    assert settings.embedded_redis
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.limits().tip_max_minor == 100_000


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "TIPMETER_PORT": "9000",
            "TIPMETER_REDIS_CLUSTER_NODES": "127.0.0.1:7000, 127.0.0.1:7001",
            "TIPMETER_LOG_LEVEL": "DEBUG",
            "TIPMETER_TIP_MAX_MINOR": "5000",
            "TIPMETER_WORKER": "on",
            "UNRELATED": "x",
        }
    )
    assert settings.port == 9000
    assert settings.redis_cluster_nodes == ("127.0.0.1:7000", "127.0.0.1:7001")
    assert settings.log_level == "debug"
    assert not settings.embedded_redis
    assert settings.redis_target().cluster_nodes == settings.redis_cluster_nodes
    assert settings.redis_target().replication.replicas == 0  # acknowledged on the primary


def test_the_replicated_acknowledgement_reaches_the_store() -> None:
    settings = Settings.from_env(
        {
            "TIPMETER_REDIS_URL": "redis://x",
            "TIPMETER_ACK_REPLICAS": "2",
            "TIPMETER_ACK_WAIT_MS": "250",
        }
    )
    assert settings.redis_target().replication == Replication(replicas=2, wait_ms=250)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TIPMETER_PORT": "eighty"}, "TIPMETER_PORT='eighty': expected an integer in 1..65535"),
        ({"TIPMETER_PORT": "70000"}, "TIPMETER_PORT"),
        ({"TIPMETER_TIP_MIN_MINOR": "1.5"}, "TIPMETER_TIP_MIN_MINOR"),
        ({"TIPMETER_LOG_LEVEL": "loud"}, "expected one of debug, info, warning, error"),
        ({"TIPMETER_PROT": "1"}, "unknown setting(s) TIPMETER_PROT"),
        (
            {"TIPMETER_TICK_MS": "2000", "TIPMETER_SESSION_LEASE_MS": "3000"},
            "TIPMETER_SESSION_LEASE_MS (3000) must be at least twice TIPMETER_TICK_MS (2000)",
        ),
        (
            {"TIPMETER_REDIS_URL": "redis://x", "TIPMETER_REDIS_CLUSTER_NODES": "a:1"},
            "exclusive",
        ),
        (
            {"TIPMETER_TIP_MAX_MINOR": "5", "TIPMETER_TIP_MIN_MINOR": "10"},
            "tip_min_minor <= tip_max_minor",
        ),
        ({"TIPMETER_CAP_MAX_MINOR": "900000000001"}, "TIPMETER_CAP_MAX_MINOR"),
        ({"TIPMETER_ACK_REPLICAS": "1"}, "TIPMETER_ACK_REPLICAS needs a Redis with replicas"),
        ({"TIPMETER_ACK_WAIT_MS": "0"}, "TIPMETER_ACK_WAIT_MS"),
    ],
)
def test_a_bad_value_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


def test_the_readme_documents_every_variable_as_the_code_declares_it() -> None:
    readme = README.read_text()
    block = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert block is not None
    assert block.group(1) == render_markdown(), (
        "README is stale: run `tipmeter config --write-readme README.md`"
    )
    for var in VARIABLES:
        assert f"`{var.name}`" in readme


def test_every_field_but_the_processor_list_is_a_declared_setting() -> None:
    undeclared = [f.name for f in dataclasses.fields(Settings) if METADATA_KEY not in f.metadata]
    assert undeclared == ["processors"]  # read from TIPMETER_PROCESSOR_<NAME>_<FIELD>
    assert len({var.name for var in VARIABLES}) == len(VARIABLES)


@pytest.mark.parametrize(
    "var", [var for var in VARIABLES if is_set(var.default)], ids=lambda var: var.name
)
def test_a_default_is_shown_as_a_user_types_it(var: Variable) -> None:
    shown = typed(var.default)
    assert "(" not in shown
    assert "'" not in shown
    assert var.parse(shown) == var.default


def test_the_readme_table_is_written_by_the_config_command(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    stale = "intro\n<!-- settings:begin -->\n| old |\n<!-- settings:end -->\nrest\n"
    readme.write_text(stale)
    # A process of its own: the command sets up logging, which would stay set in this one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIPMETER_")}
    code = "from server.cli import main; raise SystemExit(main())"
    command = [sys.executable, "-c", code, "config", "--write-readme", str(readme)]
    subprocess.run(command, env=env, check=True, timeout=60)
    written = readme.read_text()
    assert (
        written
        == f"intro\n<!-- settings:begin -->\n{render_markdown()}<!-- settings:end -->\nrest\n"
    )
    assert "| `TIPMETER_TICKET_ISSUERS` | `tipmeter` |" in written
    assert "| `TIPMETER_WARNING_SECONDS` | `60,10` |" in written


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TIPMETER_REDIS_URL": "redis://x", "TIPMETER_WORKER": "off"},
            "TIPMETER_GATEWAY=sandbox keeps its holds inside this process",
        ),
        (
            {"TIPMETER_REDIS_URL": "redis://x"},
            "set TIPMETER_WORKER=on, or use TIPMETER_GATEWAY=sandbox-http",
        ),
    ],
)
def test_serving_with_settings_that_cannot_work_is_refused(
    env: dict[str, str], message: str
) -> None:
    settings = Settings.from_env(env)  # fine for other commands (the sandbox process, migrate)
    with pytest.raises(ConfigError) as caught:
        settings.validate(serving=True)
    assert message in str(caught.value)
    Settings.from_env({**env, "TIPMETER_WORKER": "on"}).validate(serving=True)
