"""The chart as a package: lint, values schema, documented values, optional objects, NOTES."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest

from tests.deploy import helm

SCHEMA = json.loads((helm.CHART_DIR / "values.schema.json").read_text())

# Template → the value that switches it on (an optional object lives in its own file).
OPTIONAL_TEMPLATES = {
    "templates/ingress.yaml": ("ingress", "enabled"),
    "templates/hpa.yaml": ("autoscaling", "enabled"),
    "templates/pdb.yaml": ("podDisruptionBudget", "enabled"),
    "templates/networkpolicy.yaml": ("networkPolicy", "enabled"),
    "templates/serviceaccount.yaml": ("serviceAccount", "create"),
    "templates/migration-job.yaml": ("migrations", "enabled"),
    "templates/servicemonitor.yaml": ("metrics", "serviceMonitor", "enabled"),
    "templates/prometheusrule.yaml": ("metrics", "prometheusRule", "enabled"),
    "templates/dashboards.yaml": ("metrics", "dashboards", "enabled"),
}


def dig(values: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[key]
    return values


def lint_problems(report: dict[str, Any]) -> list[str]:
    """Lint errors and warnings (severity 2 and 3); INFO such as "icon is recommended" passes."""
    return [*report["errors"], *(m["error"] for m in report["messages"] if m["severity"] >= 2)]


def test_lint_is_clean(release: helm.Release) -> None:
    report = helm.lint(release.values)
    assert report["total_charts_linted"] == 1
    assert lint_problems(report) == []


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    """The lint test above can fail: a template error is reported, not raised."""
    chart = Path(shutil.copytree(helm.CHART_DIR, tmp_path / "chart"))
    service = chart / "templates" / "service.yaml"
    service.write_text(service.read_text() + "\n  {{ .Values.nope.missing }}\n")
    assert lint_problems(helm_python.lint(chart, strict=True))


def test_every_value_is_documented() -> None:
    undocumented = [".".join(path) for path, doc in helm.values_docs().items() if not doc]
    assert undocumented == []


def schema_node(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema of one values path, following additionalProperties and $ref."""
    node: dict[str, Any] = SCHEMA
    for key in path:
        if key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
        if "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_schema_is_draft_07_and_describes_every_value() -> None:
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    missing = []
    for path in helm.values_docs():
        node = schema_node(path)
        if node is None or not node.get("description"):
            missing.append(".".join(path))
    assert missing == []


@pytest.mark.parametrize(
    "values",
    [
        {"unknownTopLevelKey": True},
        {"config": {"RATE_LIMIT_SCOPE": "everybody"}},
        {"config": {"LOG_LEVEL": "LOUD"}},
        {"config": {"LOG_LEVEL": "CRITICAL"}},  # the service refuses it at start-up
        {"config": {"CACHE_TTL_SECOND": "300"}},  # misspelt: it would be ignored
        {"config": {"MAX_CONCURRENT_REQUESTS": "0"}},
        {"config": {"PRICE_TOLERANCE": "5"}},
        {"config": {"RATE_LIMIT": "lots"}},
        {"config": {"CACHE_TTL_SECONDS": "five minutes"}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"web": {"replicaCount": "two"}},
        {"service": {"type": "ExternalName"}},
        {"ingress": {"hosts": [{"host": "x.example.com", "paths": [{"path": "/"}]}]}},
        {"cronJobs": {"report": {"command": "flask report send"}}},
        {"cronJobs": {"Nightly_Job": {"enabled": True, "schedule": "0 1 * * *", "command": ["x"]}}},
        {"networkPolicy": {"egress": {"dns": {"ports": [{"port": 53, "protocol": "ICMP"}]}}}},
        {"metrics": {"prometheusRule": {"errorRatio": 5}}},
        {"secret": {"values": {"TOKEN_SECRET": "short"}}},  # the service refuses it
    ],
    ids=repr,
)
def test_schema_rejects_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        helm.render(values)


@pytest.mark.parametrize(
    "config",
    [
        {"LOG_LEVEL": "info"},
        {"PRICE_TOLERANCE": "0.015"},
        {"RATE_LIMIT": "600 per minute"},
        {"VENDOR_RETRY_DELAYS": "1, 2, 3"},
    ],
    ids=repr,
)
def test_schema_accepts_what_the_service_accepts(config: dict[str, Any]) -> None:
    assert helm.render({"config": config})


@pytest.mark.parametrize(("template", "flag"), OPTIONAL_TEMPLATES.items())
def test_optional_objects_follow_their_flag(
    release: helm.Release, template: str, flag: tuple[str, ...]
) -> None:
    assert (template in release.templates) is bool(dig(release.merged_values, flag))


def test_every_optional_object_is_exercised() -> None:
    """Some tested values file turns each optional object on, and one turns it off."""
    for template in OPTIONAL_TEMPLATES:
        rendered = [template in helm.release(name).templates for name in helm.value_sets()]
        assert any(rendered), f"{template} is never rendered"
        assert not all(rendered), f"{template} is never left out"


def test_notes_tell_how_to_reach_the_api_and_run_jobs(release: helm.Release) -> None:
    notes = release.templates["templates/NOTES.txt"]
    values = release.merged_values
    if values["ingress"]["enabled"]:
        scheme = "https" if values["ingress"]["tls"] else "http"
        assert f"{scheme}://{values['ingress']['hosts'][0]['host']}/" in notes
    else:
        assert "kubectl -n default port-forward svc/stock-trading" in notes
    for component, job in values["cronJobs"].items():
        line = f"create job --from=cronjob/stock-trading-{component} "
        assert (line in notes) is job["enabled"]


def _routed(ingress: dict[str, Any], path: str) -> bool:
    """Whether one of the Ingress's rules sends ``path`` to the service
    (Kubernetes path matching; ImplementationSpecific taken as a plain prefix)."""
    for rule in ingress["spec"]["rules"]:
        for route in rule["http"]["paths"]:
            prefix, kind = route["path"], route["pathType"]
            if kind == "Exact" and path == prefix:
                return True
            if kind == "Prefix" and (
                prefix == "/" or path == prefix or path.startswith(prefix.rstrip("/") + "/")
            ):
                return True
            if kind == "ImplementationSpecific" and path.startswith(prefix):
                return True
    return False


@pytest.mark.parametrize("value_set", ["default with ingress on", *helm.value_sets()])
def test_ingress_routes_the_api_but_not_metrics_or_probes(value_set: str) -> None:
    """Metrics and probes are for the cluster; the internet reaches only the API and its docs."""
    if value_set in helm.value_sets():
        templates = helm.release(value_set).templates
    else:
        templates = helm.render({"ingress": {"enabled": True}})
    if "templates/ingress.yaml" not in templates:
        pytest.skip(f"{value_set} renders no Ingress")
    (ingress,) = helm.yaml_objects(templates["templates/ingress.yaml"])
    for path in ["/metrics", "/healthz", "/readyz"]:
        assert not _routed(ingress, path), f"{value_set}: the ingress routes {path}"
    api = ["/stocks", "/stocks/AAPL/buy", "/users/alice/portfolios", "/docs", "/openapi.json"]
    for path in api:
        assert _routed(ingress, path), f"{value_set}: the ingress does not route {path}"
