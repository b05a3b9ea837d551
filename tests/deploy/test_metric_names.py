"""Every metric the alerts and dashboards query is one the service exports."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.deploy import promql


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            'sum by (endpoint) (rate(a_total{job="x", status=~"5.."}[5m])) / sum(rate(a_total))',
            {"a_total"},
        ),
        (
            'histogram_quantile(0.99, sum by (le, path) (rate(h_bucket{a="b"}[$__rate_interval])))',
            {"h_bucket"},
        ),
        ('time() - max(ts_seconds{namespace="$namespace"}) > 26 * 3600', {"ts_seconds"}),
        ("max(g) > bool 0 and on() absent(other) offset 5m", {"g", "other"}),
        ("sum without (instance) (x) unless ignoring(job) y", {"x", "y"}),
        ('count(z{l="sum by (fake)"}) > 1e3', {"z"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert promql.metric_names(expr) == names


def test_grafana_variable_queries() -> None:
    assert promql.grafana_query_expr('label_values(m_total{a="b"}, job)') == 'm_total{a="b"}'
    assert promql.grafana_query_expr("label_values(job)") is None
    assert promql.grafana_query_expr("sum(x)") == "sum(x)"


def test_exported_names_follow_metric_types() -> None:
    exposition = """\
# HELP c_total A counter without samples yet.
# TYPE c_total counter
# HELP h_seconds A histogram.
# TYPE h_seconds histogram
h_seconds_bucket{le="+Inf"} 1.0
h_seconds_count 1.0
h_seconds_sum 0.5
# HELP g A gauge.
# TYPE g gauge
g 1.0
"""
    names = promql.exported_names(exposition)
    assert {"c_total", "h_seconds_bucket", "h_seconds_sum", "h_seconds_count", "g"} <= names
    assert "c" not in names
    assert "h_seconds" not in names


def test_chart_queries_only_exported_metrics(client: FlaskClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    exported = promql.exported_names(response.text)
    expressions = promql.chart_expressions()
    assert expressions
    unknown = sorted(
        {
            f"{name} ({where})"
            for where, expr in expressions
            for name in promql.metric_names(expr)
            if name not in exported
        }
    )
    assert not unknown, "queried but not exported:\n" + "\n".join(unknown)
