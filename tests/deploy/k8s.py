"""Reading Kubernetes objects: pod templates, selectors, Pod Security checks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.deploy.helm import yaml_objects

Obj = dict[str, Any]

# Volume types the Pod Security "restricted" profile allows.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)


def load_manifests(path: Path) -> list[Obj]:
    """The objects of one manifest file."""
    return yaml_objects(path.read_text())


def pod_templates(obj: Obj) -> Iterator[tuple[Obj, Obj]]:
    """(metadata, spec) of every pod an object runs: a Pod, or a workload's pod template."""
    kind, spec = obj["kind"], obj.get("spec", {})
    if kind == "Pod":
        yield obj["metadata"], spec
    elif kind == "CronJob":
        template = spec["jobTemplate"]["spec"]["template"]
        yield template["metadata"], template["spec"]
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        yield spec["template"]["metadata"], spec["template"]["spec"]


def containers(pod_spec: Obj) -> list[Obj]:
    """Every container of a pod: init, regular and ephemeral."""
    return [
        *pod_spec.get("initContainers", []),
        *pod_spec["containers"],
        *pod_spec.get("ephemeralContainers", []),
    ]


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects ``labels``."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        if operator in {"In", "NotIn"}:
            matched = labels.get(key) in expression["values"]
        else:
            matched = key in labels
        if matched is not (operator in {"In", "Exists"}):
            return False
    return True


def restricted_violations(pod_spec: Obj, *, uid: int | None = None) -> list[str]:
    """What breaks Pod Security "restricted" (plus a read-only root) in a pod spec.

    A container's securityContext overrides its pod's. With ``uid``, every
    container must also run as that UID and GID. Returns readable findings;
    empty means compliant.
    """
    found: list[str] = []
    pod_context = pod_spec.get("securityContext", {})
    found += [
        f"pod sets {field}"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if pod_spec.get(field)
    ]
    for volume in pod_spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} is {sorted(kinds)}")
    for container in containers(pod_spec):
        context = container.get("securityContext", {})

        def effective(field: str, context: Obj = context) -> Any:
            return context.get(field, pod_context.get(field))

        name = container["name"]
        if effective("runAsNonRoot") is not True:
            found.append(f"{name}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            found.append(f"{name}: runs as UID 0")
        if uid is not None and (effective("runAsUser"), effective("runAsGroup")) != (uid, uid):
            found.append(f"{name}: runs as {effective('runAsUser')}:{effective('runAsGroup')}")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities not dropped")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        if (effective("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
            found.append(f"{name}: no RuntimeDefault seccomp profile")
        if context.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: root filesystem is writable")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: uses a hostPort")
    return found


def mounted_volume(pod_spec: Obj, container: Obj, mount_path: str) -> Obj | None:
    """The pod volume a container mounts at ``mount_path``, if any."""
    names = [m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == mount_path]
    volumes = [v for v in pod_spec.get("volumes", []) if v["name"] in names]
    return volumes[0] if volumes else None


def env_value(container: Obj, name: str) -> str | None:
    """The literal value of an environment variable set on a container."""
    for variable in container.get("env", []):
        if variable["name"] == name:
            return str(variable.get("value"))
    return None
