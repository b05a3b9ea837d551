"""Every rendered object and every file in k8s/ is valid Kubernetes (strict
schemas of a fixed version); CRD objects are checked by hand; k8s/ is in
step with the chart; k8s/dev provides what the chart's defaults point at."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from tests.deploy import helm
from tests.deploy.k8s import Obj, load_manifests, pod_templates, restricted_violations

PLAIN_FILES = sorted(helm.MANIFESTS_DIR.glob("**/*.yaml"))
DEV_DIR = helm.MANIFESTS_DIR / "dev"
DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d)$")
SEVERITIES = {"critical", "warning", "info"}


def validate(obj: Obj) -> None:
    """Validate one object against the strict schema of KUBE_VERSION; raises on failure."""
    assert obj["kind"] not in helm.CRD_KINDS
    kubernetes_validate.validate(obj, helm.KUBE_VERSION, strict=True)


def test_rendered_objects_are_valid(release: helm.Release) -> None:
    for obj in release.objects:
        if obj["kind"] not in helm.CRD_KINDS:
            validate(obj)


def test_validation_rejects_an_unknown_field(default_release: helm.Release) -> None:
    """Strict mode catches a misspelt field (the tests above can fail)."""
    deployment = default_release.get("Deployment", "stock-trading")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)


def test_service_monitor_structure(release: helm.Release) -> None:
    services = release.of_kind("Service")
    for monitor in release.of_kind("ServiceMonitor"):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        spec = monitor["spec"]
        labels = spec["selector"]["matchLabels"]
        (service,) = [s for s in services if labels.items() <= s["metadata"]["labels"].items()]
        port_names = {port["name"] for port in service["spec"]["ports"]}
        assert spec["endpoints"]
        for endpoint in spec["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
            assert DURATION.match(endpoint["interval"])
            assert DURATION.match(endpoint["scrapeTimeout"])


def test_prometheus_rule_structure(release: helm.Release) -> None:
    for rule_object in release.of_kind("PrometheusRule"):
        assert rule_object["apiVersion"] == "monitoring.coreos.com/v1"
        groups = rule_object["spec"]["groups"]
        assert len({group["name"] for group in groups}) == len(groups)
        for group in groups:
            assert group["rules"]
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule)
                assert isinstance(rule["expr"], str)
                assert rule["expr"].strip()
                assert "for" not in rule or DURATION.match(rule["for"])
                if "alert" in rule:
                    assert re.match(r"^[A-Z][A-Za-z0-9]+$", rule["alert"])
                    assert rule["labels"]["severity"] in SEVERITIES
                    assert rule["annotations"]["summary"]
                    assert rule["annotations"]["description"]


@pytest.mark.parametrize("path", PLAIN_FILES, ids=lambda p: str(p.relative_to(helm.REPO_ROOT)))
def test_plain_manifests_are_valid(path: Path) -> None:
    objects = load_manifests(path)
    assert objects
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize("path", PLAIN_FILES, ids=lambda p: str(p.relative_to(helm.REPO_ROOT)))
def test_plain_manifests_are_restricted(path: Path) -> None:
    """The chart's pods run as 10001; the dev dependencies as their images' own users."""
    uid = None if path.is_relative_to(DEV_DIR) else 10001
    for obj in load_manifests(path):
        for _, spec in pod_templates(obj):
            assert restricted_violations(spec, uid=uid) == [], obj["metadata"]["name"]


def test_plain_manifests_are_in_step_with_the_chart() -> None:
    """k8s/ is a fresh render of the chart: run `make manifests` after a chart change."""
    on_disk = {path.name: path.read_text() for path in helm.MANIFESTS_DIR.glob("*.yaml")}
    assert on_disk == helm.manifest_files()


def test_plain_manifests_have_no_helm_hooks() -> None:
    for path in PLAIN_FILES:
        for obj in load_manifests(path):
            annotations = obj["metadata"].get("annotations", {})
            assert not any(key.startswith("helm.sh/") for key in annotations), path


def test_dev_dependencies_match_the_chart_defaults(default_release: helm.Release) -> None:
    """The chart's default settings point at Services that k8s/dev provides."""
    services = {
        obj["metadata"]["name"]: {port["port"] for port in obj["spec"]["ports"]}
        for path in DEV_DIR.glob("*.yaml")
        for obj in load_manifests(path)
        if obj["kind"] == "Service"
    }
    values = default_release.merged_values
    urls = [
        values["secret"]["values"]["DATABASE_URL"],
        values["secret"]["values"]["REDIS_URL"],
        values["config"]["VENDOR_BASE_URL"],
        f"smtp://{values['config']['SMTP_HOST']}:{values['config']['SMTP_PORT']}",
    ]
    for url in urls:
        parts = urlsplit(url)
        assert parts.port in services.get(parts.hostname or "", set()), url


def test_dev_database_credentials_match_the_chart_default(default_release: helm.Release) -> None:
    (secret,) = [
        obj for obj in load_manifests(DEV_DIR / "postgresql.yaml") if obj["kind"] == "Secret"
    ]
    url = urlsplit(default_release.merged_values["secret"]["values"]["DATABASE_URL"])
    credentials = secret["stringData"]
    assert (url.username, url.password, url.path.lstrip("/")) == (
        credentials["POSTGRES_USER"],
        credentials["POSTGRES_PASSWORD"],
        credentials["POSTGRES_DB"],
    )
