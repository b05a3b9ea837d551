"""Metric names in the chart's PromQL (alerts, dashboards) and in an exposition.

Not a PromQL parser: it strips what cannot hold a metric name (strings,
label matchers, ranges, grouping label lists, Grafana variables) and keeps
the identifiers that are neither functions, keywords nor numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.helm import CHART_DIR, render, yaml_objects

DASHBOARDS_DIR = CHART_DIR / "dashboards"

# Keywords and aggregation operators that are not followed by "(" directly.
KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "and",
        "or",
        "unless",
        "atan2",
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
        "inf",
        "nan",
    }
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GRAFANA_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# An identifier that does not start inside a number (1e3, 5m, 0x1f).
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = _STRINGS.sub(" ", expr)
    text = _GRAFANA_VARIABLES.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(r" \1 ", text)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if not match.group(2) and match.group(1).lower() not in KEYWORDS
    }


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


# Series names each metric type exposes besides (or instead of) its family name.
_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics page makes queryable, including metric
    families declared without samples yet (a labelled counter before its
    first increment): a counter ``x`` as ``x_total``, a histogram ``h`` as
    ``h_bucket``/``h_sum``/``h_count``, a gauge as itself.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SERIES_SUFFIXES.get(family.type, ("",)))
    return names
