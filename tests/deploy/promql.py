"""The chart's PromQL: the alert rules (rendered with Helm's engine) and the
dashboards' panel and variable queries, as the alert unit tests and the live
scrape (a real Prometheus) evaluate them."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.helm import CHART_DIR, render, yaml_objects

DASHBOARDS_DIR = CHART_DIR / "dashboards"

_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.DOTALL)


def grafana_query_expr(query: str) -> str | None:
    """The PromQL inside a Grafana variable query (``label_values(expr, label)``)."""
    if match := _LABEL_VALUES.match(query):
        return match.group(1)
    if query.strip().startswith(("label_values(", "label_names(", "metrics(")):
        return None
    return query


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of a dashboard."""
    dashboard = json.loads(path.read_text())
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield f"{path.name}: panel {panel.get('title')!r}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        expr = grafana_query_expr(query["query"] if isinstance(query, dict) else query)
        if expr:
            yield f"{path.name}: variable {variable['name']!r}", expr


def rule_groups(values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rule groups of the chart's PrometheusRule, rendered on with ``values``
    (over the chart's defaults): the ``groups`` of a Prometheus rule file."""
    rendered = render({**(values or {}), "metrics": _rule_on(values)})
    (rule_object,) = yaml_objects(rendered["templates/prometheusrule.yaml"])
    groups: list[dict[str, Any]] = rule_object["spec"]["groups"]
    return groups


def _rule_on(values: Mapping[str, Any] | None) -> dict[str, Any]:
    metrics = dict((values or {}).get("metrics", {}))
    metrics["prometheusRule"] = {**metrics.get("prometheusRule", {}), "enabled": True}
    return metrics


def write_rule_file(path: Path, values: Mapping[str, Any] | None = None) -> Path:
    """Write the chart's alerts as a Prometheus rule file (``rule_files:``) to ``path``."""
    path.write_text(yaml.safe_dump({"groups": rule_groups(values)}, sort_keys=False))
    return path


def alert_expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every rule of the chart's PrometheusRule (rendered on)."""
    for group in rule_groups():
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            yield f"PrometheusRule {group['name']}/{name}", rule["expr"]


def chart_expressions() -> list[tuple[str, str]]:
    """Every PromQL expression the chart ships: alerts and dashboards."""
    expressions = list(alert_expressions())
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        expressions += dashboard_expressions(path)
    return expressions


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.deploy.promql RULES.yaml``: write the chart's alerts (default
    values) as a Prometheus rule file, for a local Prometheus (see the README)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("path", type=Path, help="the rule file to write")
    args = parser.parse_args(argv)
    write_rule_file(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
