"""Render the Helm chart offline with Helm's own engine and write k8s/.

The chart is rendered by helm-python-sdk (``helm_python``), which embeds
Helm's Go SDK: the same template engine, values coalescing and
``values.schema.json`` validation as ``helm template``, with no helm binary,
no cluster and no network. The tests in this package and ``make manifests``
go through the functions here, so the suite and k8s/ see the same render.

Usage: ``python -m tests.deploy.helm --write k8s/`` regenerates the plain
manifests (one file per chart template) from the chart's default values.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "chart"
MANIFESTS_DIR = REPO_ROOT / "k8s"
# Kubernetes version the chart and the manifests are linted and validated against.
KUBE_VERSION = "1.31.0"
RELEASE_NAME = "stock-trading"
NAMESPACE = "default"

# Values that turn the chart's render into plain manifests: without Helm
# nobody runs hooks, so the migration is an ordinary Job there.
PLAIN_MANIFEST_VALUES: dict[str, Any] = {"migrations": {"hook": False}}
MANIFEST_HEADER = (
    "# Generated from chart/ by `make manifests` (python -m tests.deploy.helm --write k8s/)\n"
    "# with the chart's default values and migrations.hook=false: the migration is a\n"
    "# plain Job here, not a Helm hook. Do not edit: change the chart and regenerate.\n"
)

# Templates whose output is text, not Kubernetes objects.
TEXT_TEMPLATES = frozenset({"templates/NOTES.txt"})

# Kinds whose API is a CRD that kubernetes-validate has no schema for.
CRD_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})


def load_yaml_file(path: Path) -> dict[str, Any]:
    """Parse one YAML document (a values file); an empty file is ``{}``."""
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def yaml_objects(text: str) -> list[dict[str, Any]]:
    """The non-empty documents of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render(values: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Render the chart with ``values`` over its defaults.

    Returns template path relative to the chart (``templates/service.yaml``)
    → rendered text, templates that rendered to nothing left out.

    Raises:
        helm_python.HelmValuesError: the values break values.schema.json.
        helm_python.HelmRenderError: a template failed.
    """
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(
            dict(values or {}), name=RELEASE_NAME, namespace=NAMESPACE, is_install=True
        )
        prefix = f"{chart.name}/"
    return {path.removeprefix(prefix): text for path, text in rendered.items() if text.strip()}


def lint(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``helm lint --strict`` of the chart with ``values``; findings are data."""
    return helm.lint(CHART_DIR, dict(values or {}), strict=True, kube_version=f"v{KUBE_VERSION}")


def merged_values(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values a release would use: the chart's defaults coalesced with ``values``."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.merge_values(dict(values or {}))


@dataclass(frozen=True)
class Release:
    """One render of the chart: the values given, the templates and their objects."""

    name: str
    values: dict[str, Any]
    templates: dict[str, str]

    @functools.cached_property
    def objects(self) -> list[dict[str, Any]]:
        """Every Kubernetes object rendered, in template order."""
        return [
            obj
            for path, text in self.templates.items()
            if path not in TEXT_TEMPLATES
            for obj in yaml_objects(text)
        ]

    @functools.cached_property
    def merged_values(self) -> dict[str, Any]:
        """The values the release uses (defaults coalesced with ``values``)."""
        return merged_values(self.values)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """The rendered objects of one kind."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The one object of ``kind`` named ``name``; KeyError when absent."""
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{kind}/{name} not rendered by {self.name}")


def value_sets() -> dict[str, Path | None]:
    """Every values file the chart is tested with: defaults, ci/*-values.yaml, production."""
    sets: dict[str, Path | None] = {"default": None}
    for path in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
        sets[f"ci/{path.name}"] = path
    sets["values-production.yaml"] = CHART_DIR / "values-production.yaml"
    return sets


@functools.cache
def release(value_set: str) -> Release:
    """The chart rendered with one of :func:`value_sets` (rendered once per process)."""
    path = value_sets()[value_set]
    values = load_yaml_file(path) if path else {}
    return Release(name=value_set, values=values, templates=render(values))


def manifest_files() -> dict[str, str]:
    """The files k8s/ must hold: file name → content, one file per chart template."""
    rendered = render(PLAIN_MANIFEST_VALUES)
    return {
        Path(path).name: MANIFEST_HEADER + text.lstrip("\n")
        for path, text in rendered.items()
        if path not in TEXT_TEMPLATES
    }


def write_manifests(destination: Path) -> list[Path]:
    """Write :func:`manifest_files` into ``destination``; returns the files written.

    Generated files that the chart no longer renders are removed; any other
    file (and sub-folders such as k8s/dev) is left alone.
    """
    destination.mkdir(parents=True, exist_ok=True)
    files = manifest_files()
    for stale in destination.glob("*.yaml"):
        if stale.name not in files and stale.read_text().startswith(MANIFEST_HEADER):
            stale.unlink()
    written = []
    for name, content in files.items():
        target = destination / name
        target.write_text(content)
        written.append(target)
    return written


def mapping_keys(
    node: yaml.Node, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], yaml.ScalarNode]]:
    """Every mapping key under ``node`` (not inside lists) with its key path."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            key_path = (*path, str(key.value))
            yield key_path, key
            yield from mapping_keys(value, key_path)


def values_docs(path: Path = CHART_DIR / "values.yaml") -> dict[tuple[str, ...], str | None]:
    """Key path → its ``# --`` comment (helm-docs style) in a values file, or None.

    The comment is the block of comment lines right above the key; its text
    starts at ``# --`` and runs to the key.
    """
    text = path.read_text()
    lines = text.splitlines()
    docs: dict[tuple[str, ...], str | None] = {}
    root = yaml.compose(text)
    assert root is not None, f"{path} is empty"
    for key_path, key in mapping_keys(root):
        block: list[str] = []
        line_no = key.start_mark.line - 1
        while line_no >= 0 and lines[line_no].lstrip().startswith("#"):
            block.insert(0, lines[line_no].strip().lstrip("#").strip())
            line_no -= 1
        starts = [i for i, line in enumerate(block) if line.startswith("-- ")]
        docs[key_path] = " ".join(block[starts[-1] :])[3:] if starts else None
    return docs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.deploy.helm", description=__doc__)
    parser.add_argument(
        "--write",
        metavar="DIR",
        type=Path,
        help="write the plain manifests (default values) into DIR, e.g. k8s/",
    )
    args = parser.parse_args(argv)
    if args.write is None:
        for name, content in manifest_files().items():
            sys.stdout.write(f"---\n# {name}\n{content}")
        return 0
    for path in write_manifests(args.write):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
