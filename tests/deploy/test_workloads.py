"""What the rendered workloads promise: hardened pods, component selectors,
probes, the service's entry points, hooks, rollouts and network policy."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.deploy import helm
from tests.deploy.k8s import (
    Obj,
    containers,
    env_value,
    mounted_volume,
    pod_templates,
    restricted_violations,
    selector_matches,
)

UID = 10001
COMPONENT = "app.kubernetes.io/component"
WEB_COMMAND = ["gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
# DESIGN.md §2, "Entry points".
MIGRATE_COMMAND = ["flask", "--app", "service.wsgi", "db", "upgrade"]
CRONJOB_COMMANDS = {
    "stock-trading-report": ["flask", "--app", "service.wsgi", "report", "send"],
    "stock-trading-sweep": ["flask", "--app", "service.wsgi", "buys", "sweep"],
    "stock-trading-tokens": ["flask", "--app", "service.wsgi", "tokens", "refresh"],
}
CRONJOB_SCHEDULES = {
    "stock-trading-report": "5 0 * * *",
    "stock-trading-sweep": "* * * * *",
    "stock-trading-tokens": "0 0 * * *",
}
HOOK = "helm.sh/hook"


def workloads(release: helm.Release) -> list[tuple[Obj, Obj, Obj]]:
    """(object, pod metadata, pod spec) of every workload rendered."""
    return [(obj, meta, spec) for obj in release.objects for meta, spec in pod_templates(obj)]


def web(release: helm.Release) -> tuple[Obj, Obj]:
    """The web Deployment's pod spec and its web container."""
    spec = release.get("Deployment", "stock-trading")["spec"]["template"]["spec"]
    return spec, next(c for c in spec["containers"] if c["name"] == "web")


def hook_weight(obj: Obj) -> int | None:
    """The hook weight of a Helm hook object, None for an ordinary object."""
    annotations = obj["metadata"].get("annotations", {})
    return int(annotations.get("helm.sh/hook-weight", 0)) if HOOK in annotations else None


def test_every_pod_is_restricted(release: helm.Release) -> None:
    assert workloads(release)
    for obj, _, spec in workloads(release):
        assert restricted_violations(spec, uid=UID) == [], obj["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        ({"securityContext": {"runAsNonRoot": False}}, "runAsNonRoot is not true"),
        ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
        ({"securityContext": {"capabilities": {"drop": []}}}, "capabilities not dropped"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "root filesystem is writable"),
        (
            {
                "podSecurityContext": {"seccompProfile": None},
                "securityContext": {"seccompProfile": None},
            },
            "no RuntimeDefault seccomp profile",
        ),
        ({"securityContext": {"runAsUser": 1000}}, "runs as 1000:10001"),
    ],
)
def test_restricted_check_finds_each_violation(change: dict[str, Any], finding: str) -> None:
    """The check above can fail: a chart value that weakens a field is reported."""
    rendered = helm.Release("weakened", change, helm.render(change))
    findings = [
        f for _, _, spec in workloads(rendered) for f in restricted_violations(spec, uid=UID)
    ]
    assert any(finding in f for f in findings), findings


def test_containers_have_resources(release: helm.Release) -> None:
    for obj, _, spec in workloads(release):
        for container in containers(spec):
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), obj["metadata"]["name"]
            assert "memory" in resources["limits"], obj["metadata"]["name"]


def test_writable_directories_are_empty_dirs(release: helm.Release) -> None:
    """The root filesystem is read-only: /tmp and the metrics directory are emptyDirs."""
    for obj, _, spec in workloads(release):
        for container in containers(spec):
            tmp = mounted_volume(spec, container, "/tmp")
            assert tmp is not None, obj["metadata"]["name"]
            assert "emptyDir" in tmp, obj["metadata"]["name"]
    spec, container = web(release)
    metrics_dir = env_value(container, "PROMETHEUS_MULTIPROC_DIR")
    assert metrics_dir is not None
    metrics = mounted_volume(spec, container, metrics_dir)
    tmp = mounted_volume(spec, container, "/tmp")
    assert metrics is not None
    assert tmp is not None
    assert "emptyDir" in metrics
    assert metrics["name"] != tmp["name"]


def test_every_workload_selects_on_its_own_component(release: helm.Release) -> None:
    components = [meta["labels"][COMPONENT] for _, meta, _ in workloads(release)]
    assert set(components) <= {"web", "migrate", "report", "sweep", "tokens"}
    assert len(components) == len(set(components)), components
    deployment = release.get("Deployment", "stock-trading")
    assert deployment["spec"]["selector"]["matchLabels"][COMPONENT] == "web"


def test_web_selectors_select_only_web_pods(release: helm.Release) -> None:
    """Service, PDB, web NetworkPolicy and Deployment never select migration or job pods."""
    selectors = [
        ("Service", release.get("Service", "stock-trading")["spec"]["selector"]),
        ("Deployment", release.get("Deployment", "stock-trading")["spec"]["selector"]),
    ]
    selectors += [
        ("PDB", obj["spec"]["selector"]) for obj in release.of_kind("PodDisruptionBudget")
    ]
    selectors += [
        ("NetworkPolicy", obj["spec"]["podSelector"])
        for obj in release.of_kind("NetworkPolicy")
        if "Ingress" in obj["spec"]["policyTypes"] and obj["spec"].get("ingress")
    ]
    for (kind, selector), (_, meta, _) in itertools.product(selectors, workloads(release)):
        selector = selector if kind != "Service" else {"matchLabels": selector}
        matched = selector_matches(selector, meta["labels"])
        assert matched is (meta["labels"][COMPONENT] == "web"), (kind, meta["labels"])
    for hpa in release.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", "stock-trading")


def test_web_container(release: helm.Release) -> None:
    _, container = web(release)
    assert container["command"] == WEB_COMMAND
    port_names = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert port_names == {"http": int(env_value(container, "PORT") or 0)}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    if release.merged_values["web"]["startupProbe"]["enabled"]:
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    else:
        assert "startupProbe" not in container


def test_rolling_update_never_drops_below_desired(release: helm.Release) -> None:
    strategy = release.get("Deployment", "stock-trading")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize(
    ("change", "annotation"),
    [
        ({"config": {"LOG_LEVEL": "DEBUG"}}, "checksum/config"),
        ({"secret": {"values": {"VENDOR_API_KEY": "rotated"}}}, "checksum/secret"),
    ],
)
def test_settings_change_rolls_web_pods(
    default_release: helm.Release, change: dict[str, Any], annotation: str
) -> None:
    def checksum(release: helm.Release) -> str:
        pod = release.get("Deployment", "stock-trading")["spec"]["template"]
        return str(pod["metadata"]["annotations"][annotation])

    changed = helm.Release("changed", change, helm.render(change))
    assert checksum(changed) != checksum(default_release)


def test_cronjobs_run_the_entry_points(default_release: helm.Release) -> None:
    cronjobs = {obj["metadata"]["name"]: obj for obj in default_release.of_kind("CronJob")}
    assert set(cronjobs) == set(CRONJOB_COMMANDS)
    for name, cronjob in cronjobs.items():
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == CRONJOB_COMMANDS[name]
        assert cronjob["spec"]["schedule"] == CRONJOB_SCHEDULES[name]
    tokens = cronjobs["stock-trading-tokens"]["spec"]["jobTemplate"]["spec"]
    # A concurrent refresh exits 3: not worth retrying.
    assert tokens["backoffLimit"] <= 2
    fail_fast = [r for r in tokens["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert fail_fast[0]["onExitCodes"]["values"] == [3]


def test_cronjobs_are_safe_to_schedule(release: helm.Release) -> None:
    for cronjob in release.of_kind("CronJob"):
        spec = cronjob["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["timeZone"] == "Etc/UTC"
        assert spec["startingDeadlineSeconds"] >= 10
        assert spec["successfulJobsHistoryLimit"] >= 1
        assert spec["failedJobsHistoryLimit"] >= 1
        job = spec["jobTemplate"]["spec"]
        assert job["activeDeadlineSeconds"] > 0
        assert job["template"]["spec"]["restartPolicy"] == "Never"


def test_migration_is_a_pre_install_pre_upgrade_hook(release: helm.Release) -> None:
    if not release.merged_values["migrations"]["enabled"]:
        assert release.of_kind("Job") == []
        return
    job = release.get("Job", "stock-trading-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations[HOOK].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    assert job["spec"]["backoffLimit"] <= 3
    assert job["spec"]["activeDeadlineSeconds"] > 0
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == MIGRATE_COMMAND


def test_hooks_only_use_what_exists_before_the_release(release: helm.Release) -> None:
    """On a first install a hook Job runs before the release's objects exist:
    its ConfigMap and Secret are hooks with a lower weight (or the existing
    Secret), and its ServiceAccount is one the chart does not create."""
    existing_secret = release.merged_values["secret"]["existingSecret"]
    hooks = {
        (obj["kind"], obj["metadata"]["name"]): hook
        for obj in release.objects
        if (hook := hook_weight(obj)) is not None
    }
    created_accounts = {obj["metadata"]["name"] for obj in release.of_kind("ServiceAccount")}
    for obj, _, spec in workloads(release):
        weight = hook_weight(obj)
        if weight is None:
            continue
        assert spec.get("serviceAccountName", "default") not in created_accounts
        for container in containers(spec):
            for source in container.get("envFrom", []):
                if "secretRef" in source and source["secretRef"]["name"] == existing_secret:
                    continue
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                name = source.get("configMapRef", source.get("secretRef"))["name"]
                assert hooks.get((kind, name), weight) < weight, (kind, name)


def test_pods_read_settings_that_are_rendered(release: helm.Release) -> None:
    existing_secret = release.merged_values["secret"]["existingSecret"]
    rendered = {(obj["kind"], obj["metadata"]["name"]) for obj in release.objects}
    for obj, _, spec in workloads(release):
        for container in containers(spec):
            refs = {
                ("ConfigMap" if "configMapRef" in source else "Secret", ref["name"])
                for source in container["envFrom"]
                for ref in (source.get("configMapRef") or source["secretRef"],)
            }
            assert {kind for kind, _ in refs} == {"ConfigMap", "Secret"}
            if existing_secret:
                assert ("Secret", existing_secret) in refs
            assert refs - {("Secret", existing_secret)} <= rendered, obj["metadata"]["name"]


def test_existing_secret_replaces_the_charts_secret(full_release: helm.Release) -> None:
    assert full_release.merged_values["secret"]["existingSecret"] == "stock-trading-env"
    assert full_release.of_kind("Secret") == []
    pod = full_release.get("Deployment", "stock-trading")["spec"]["template"]
    assert "checksum/secret" not in pod["metadata"]["annotations"]


def test_chart_secret_leaves_out_empty_values(default_release: helm.Release) -> None:
    secret = default_release.get("Secret", "stock-trading")
    assert set(secret["data"]) == {"DATABASE_URL", "REDIS_URL", "TOKEN_SECRET"}


def test_network_policy_denies_by_default(release: helm.Release) -> None:
    if not release.merged_values["networkPolicy"]["enabled"]:
        assert release.of_kind("NetworkPolicy") == []
        return
    policies = release.of_kind("NetworkPolicy")
    for _, meta, _ in workloads(release):
        selecting = [
            p for p in policies if selector_matches(p["spec"]["podSelector"], meta["labels"])
        ]
        assert {"Ingress", "Egress"} <= {t for p in selecting for t in p["spec"]["policyTypes"]}
    egress = {
        (port["port"], port.get("protocol", "TCP"))
        for policy in policies
        for rule in policy["spec"].get("egress", [])
        for port in rule["ports"]
    }
    assert {(53, "UDP"), (53, "TCP"), (5432, "TCP"), (6379, "TCP")} <= egress
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            assert rule["from"], "an ingress rule without peers admits everybody"
            assert all(set(peer) == {"namespaceSelector"} for peer in rule["from"])
