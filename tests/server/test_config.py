"""Settings: every TIPMETER_* variable parsed, checked, and documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.config import VARIABLES, Settings, render_markdown
from server.errors import ConfigError

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
        "README is stale: paste `tipmeter config --markdown`"
    )
    for var in VARIABLES:
        assert f"`{var.name}`" in readme


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
        settings.check_serving()
    assert message in str(caught.value)
    Settings.from_env({**env, "TIPMETER_WORKER": "on"}).check_serving()
