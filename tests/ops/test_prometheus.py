"""The operators' own tools: the Prometheus alerting rules pass ``promtool check rules`` and
their unit tests (``promtool test rules``: each alert fires past its threshold and stays quiet
under it), every metric they and the Grafana dashboard name is one tipmeter exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

import pytest
from prometheus_client import CollectorRegistry

from metering import keys
from metering.store import Store
from server.backlog_metrics import BacklogGauges
from server.metrics import Metrics

OPS: Final = Path(__file__).resolve().parents[2] / "ops"
RULES: Final = OPS / "prometheus" / "tipmeter-rules.yml"
RULES_TEST: Final = OPS / "prometheus" / "tipmeter-rules.test.yml"
DASHBOARD: Final = OPS / "grafana" / "tipmeter.json"
_METRIC: Final = re.compile(r"\b(tipmeter_[a-z_]+)")
#: Exported by the refunds API once it has served (a gauge made on first use).
_LAZY: Final = {"tipmeter_dispute_ratio"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = os.environ.get("PROMTOOL_BIN") or shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run `make promtool` (Debian's prometheus package)")
    return found


def test_the_rules_are_valid(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_each_alert_fires_past_its_threshold_and_not_under_it(promtool: str) -> None:
    tested = subprocess.run(
        [promtool, "test", "rules", RULES_TEST.name],
        cwd=RULES_TEST.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def _exported() -> set[str]:
    registry = Metrics().registry
    BacklogGauges(registry)
    names: set[str] = set(_LAZY)
    for family in registry.collect():
        for sample in family.samples:
            names.add(sample.name)
        names.add(family.name)
    # Histograms' series names (the registry has samples only once something is observed).
    names |= {f"{n}_bucket" for n in list(names)} | {f"{n}_total" for n in list(names)}
    return names


def test_the_rules_and_the_dashboard_name_only_exported_metrics() -> None:
    exported = _exported()
    rules = set(_METRIC.findall(RULES.read_text()))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = rules | {m for expr in exprs for m in _METRIC.findall(expr)}
    assert used - exported == set()
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


async def test_the_backlog_gauges_read_the_streams_in_redis(store: Store) -> None:
    registry = CollectorRegistry()
    gauges = BacklogGauges(registry)
    await store.client.xadd(keys.settle_dead_letters(), {"why": "test"})
    await store.client.zadd(keys.webhook_due(), {"evt-1": 1_000})
    await gauges.refresh(store, now_ms=61_000)
    assert registry.get_sample_value("tipmeter_settlement_dead_letters") == 1
    assert registry.get_sample_value("tipmeter_webhook_backlog") == 1
    assert registry.get_sample_value("tipmeter_webhook_oldest_due_seconds") == 60
    assert registry.get_sample_value("tipmeter_settlement_queue_entries") == 0
