"""The Grafana dashboard and the alerts the chart ships."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import helm, promql

DASHBOARDS = sorted(promql.DASHBOARDS_DIR.glob("*.json"))
DATASOURCE = "${datasource}"
ALERTS = {
    "StockTradingHighErrorRatio",
    "StockTradingHighLatency",
    "StockTradingManyRateLimited",
    "StockTradingVendorErrors",
    "StockTradingVendorCircuitOpen",
    "StockTradingReportNotSent",
    "StockTradingReportFailed",
    "StockTradingTokenRefreshFailed",
    "StockTradingRedisErrors",
    "StockTradingUnknownBuys",
    "StockTradingBuysInterrupted",
    "StockTradingUnresolvedOrders",
    "StockTradingSweepNotRunning",
}
JOB_METRICS = ("trading_report_", "trading_tokens_refresh_", "trading_sweep_")
# The service's own series all carry its prefix; whether each is exported and
# each query answers is proven by the live scrape (tests/functional/test_prometheus.py).
SERVICE_METRIC = re.compile(r"\btrading_[a-z0-9_]+")


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels in display order (rows flattened), rows left out."""
    ordered = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            ordered += panel.get("panels", [])
        else:
            ordered.append(panel)
    return ordered


def panel_metrics(panel: dict[str, Any]) -> set[str]:
    return {name for target in panel["targets"] for name in SERVICE_METRIC.findall(target["expr"])}


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_has_fixed_uid_and_datasource_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] == path.stem
    assert dashboard.get("id") is None, "an exported id breaks provisioning"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == DATASOURCE for t in panel["targets"])
    ids = [p["id"] for p in dashboard["panels"]]
    ids += [child["id"] for p in dashboard["panels"] for child in p.get("panels", [])]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_order_red_first_jobs_last(path: Path) -> None:
    ordered = panels(json.loads(path.read_text()))
    red = [panel_metrics(p) for p in ordered[:4]]
    assert all(names and all(n.startswith("trading_http_") for n in names) for names in red)
    titles = " ".join(p["title"].lower() for p in ordered[:4])
    assert all(word in titles for word in ("rate", "error", "p50", "p99"))
    jobs = [
        i for i, p in enumerate(ordered) if any(n.startswith(JOB_METRICS) for n in panel_metrics(p))
    ]
    assert jobs
    assert jobs == list(range(len(ordered) - len(jobs), len(ordered)))
    since = [p for p in ordered if p["title"].lower().startswith("time since")]
    assert {p["fieldConfig"]["defaults"]["unit"] for p in since} == {"s"}
    assert len(since) == 3


def test_grafana_variable_queries() -> None:
    assert promql.grafana_query_expr('label_values(m_total{a="b"}, job)') == 'm_total{a="b"}'
    assert promql.grafana_query_expr("label_values(job)") is None
    assert promql.grafana_query_expr("sum(x)") == "sum(x)"


def test_dashboard_config_map_for_the_grafana_sidecar(full_release: helm.Release) -> None:
    (config_map,) = [
        obj
        for obj in full_release.of_kind("ConfigMap")
        if obj["metadata"]["name"].endswith("-dashboards")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert {name: json.loads(text) for name, text in config_map["data"].items()} == {
        path.name: json.loads(path.read_text()) for path in DASHBOARDS
    }


def test_alerts_cover_the_service(full_release: helm.Release) -> None:
    (rule_object,) = full_release.of_kind("PrometheusRule")
    rules = [rule for group in rule_object["spec"]["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == ALERTS
    thresholds = full_release.merged_values["metrics"]["prometheusRule"]
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules}
    assert exprs["StockTradingReportNotSent"].endswith(
        f"> {thresholds['reportMaxAgeHours']} * 3600"
    )
    assert exprs["StockTradingHighErrorRatio"].endswith(f"> {thresholds['errorRatio']}")
    assert exprs["StockTradingHighLatency"].startswith("histogram_quantile(0.99,")
    for alert, expr in exprs.items():
        # Only this release's series: Prometheus' job label is the Service's name.
        assert expr.count('namespace="default", job="stock-trading"') == expr.count("trading_"), (
            alert
        )
    assert all(rule["labels"]["team"] == "trading" for rule in rules)
