"""The named list of processors: read, validated at start, and the single-gateway settings
kept as a list of one."""

from __future__ import annotations

import pytest

from metering.clock import FakeClock
from server.config import Settings
from server.errors import ConfigError

TWO = {
    "TIPMETER_PROCESSORS": "eu,segpay",
    "TIPMETER_PROCESSOR_EU_KIND": "sandbox",
    "TIPMETER_PROCESSOR_EU_CURRENCIES": "EUR,GBP",
    "TIPMETER_PROCESSOR_EU_COUNTRIES": "DE,FR",
    "TIPMETER_PROCESSOR_EU_WEIGHT": "3",
    "TIPMETER_PROCESSOR_EU_INCREMENTAL": "off",
    "TIPMETER_PROCESSOR_SEGPAY_KIND": "segpay",
    "TIPMETER_PROCESSOR_SEGPAY_URL": "http://127.0.0.1:1",
    "TIPMETER_PROCESSOR_SEGPAY_ETICKET_ID": "109595:13925",
    "TIPMETER_PROCESSOR_SEGPAY_PRODUCTS": "tab",
    "TIPMETER_PROCESSORS_CASCADE_MAX": "1",
}


def test_a_named_list_of_processors_is_read_with_each_ones_settings() -> None:
    settings = Settings.from_env(TWO)
    eu, segpay = settings.processor_specs()
    assert (eu.name, eu.kind, eu.currencies, eu.countries, eu.weight) == (
        "eu",
        "sandbox",
        frozenset({"EUR", "GBP"}),
        frozenset({"DE", "FR"}),
        3,
    )
    assert (segpay.kind, segpay.products, segpay.options["ETICKET_ID"]) == (
        "segpay",
        frozenset({"tab"}),
        "109595:13925",
    )
    registry = settings.processor_registry(FakeClock())
    assert registry.names == ("eu", "segpay")
    assert list(registry.gateways()) == ["eu", "segpay"]
    assert registry.cascade_max == 1
    assert not registry.for_processor("eu").capabilities.incremental_authorization


def test_the_single_gateway_settings_are_a_list_of_one() -> None:
    settings = Settings.from_env(
        {"TIPMETER_GATEWAY": "sandbox-http", "TIPMETER_GATEWAY_URL": "http://x"}
    )
    (only,) = settings.processor_specs()
    # Named after its kind: what the ledger records as the processor of a single gateway.
    assert (only.name, only.kind, only.options["URL"]) == (
        "sandbox-http",
        "sandbox-http",
        "http://x",
    )
    assert Settings.from_env({}).processor_specs()[0].kind == "sandbox"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TIPMETER_PROCESSOR_EU_KIND": "paypal"}, "TIPMETER_PROCESSOR_EU_KIND"),
        ({"TIPMETER_PROCESSOR_EU_CURRENCIES": "EUR,XXX"}, "TIPMETER_PROCESSOR_EU_CURRENCIES"),
        ({"TIPMETER_PROCESSOR_EU_COUNTRIES": "Germany"}, "TIPMETER_PROCESSOR_EU_COUNTRIES"),
        ({"TIPMETER_PROCESSOR_EU_WEIGHT": "-1"}, "TIPMETER_PROCESSOR_EU_WEIGHT"),
        ({"TIPMETER_PROCESSOR_EU_PRODUCTS": "coins"}, "TIPMETER_PROCESSOR_EU_PRODUCTS"),
        ({"TIPMETER_PROCESSOR_EU_INCREMENTAL": "maybe"}, "TIPMETER_PROCESSOR_EU_INCREMENTAL"),
        ({"TIPMETER_PROCESSOR_EU_DECLINE_HOLDS": "nope"}, "TIPMETER_PROCESSOR_EU_DECLINE_HOLDS"),
        ({"TIPMETER_PROCESSOR_SEGPAY_ETICKET_ID": ""}, "TIPMETER_PROCESSOR_SEGPAY_ETICKET_ID"),
        ({"TIPMETER_PROCESSOR_EU_API_KEY": "sk"}, "TIPMETER_PROCESSOR_EU_API_KEY"),
        ({"TIPMETER_PROCESSOR_US_KIND": "sandbox"}, "TIPMETER_PROCESSOR_US_KIND"),
        ({"TIPMETER_PROCESSORS": "eu,eu"}, "TIPMETER_PROCESSORS"),
        ({"TIPMETER_PROCESSORS": "eu,Bad-Name"}, "TIPMETER_PROCESSORS"),
        ({"TIPMETER_GATEWAY": "stripe"}, "TIPMETER_GATEWAY"),
        ({"TIPMETER_STRIPE_API_KEY": "sk_1"}, "TIPMETER_STRIPE_API_KEY"),
    ],
)
def test_a_bad_processor_setting_stops_the_start_naming_it(
    change: dict[str, str], named: str
) -> None:
    env = {**TWO, **change}
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({k: v for k, v in env.items() if v})
    assert named in str(caught.value)


def test_a_processors_secrets_stay_out_of_its_repr() -> None:
    settings = Settings.from_env(
        {
            "TIPMETER_PROCESSORS": "s",
            "TIPMETER_PROCESSOR_S_KIND": "stripe",
            "TIPMETER_PROCESSOR_S_API_KEY": "sk_live_secret",
        }
    )
    assert "sk_live_secret" not in repr(settings.processors)


def test_a_stripe_processor_needs_its_key_and_takes_a_base_url() -> None:
    with pytest.raises(ConfigError, match="TIPMETER_PROCESSOR_S_API_KEY"):
        Settings.from_env({"TIPMETER_PROCESSORS": "s", "TIPMETER_PROCESSOR_S_KIND": "stripe"})
    with pytest.raises(ConfigError, match="TIPMETER_STRIPE_API_KEY"):
        Settings.from_env({"TIPMETER_GATEWAY": "stripe"})
    settings = Settings.from_env(
        {
            "TIPMETER_GATEWAY": "stripe",
            "TIPMETER_STRIPE_API_KEY": "sk_test_1",
            "TIPMETER_GATEWAY_URL": "http://127.0.0.1:9",
        }
    )
    assert settings.processor_specs()[0].options["URL"] == "http://127.0.0.1:9"
