"""Every alert of the chart, unit-tested with ``promtool test rules``.

The test files live beside the chart (``chart/tests/alerts/<alert>.yaml``) and
name the rendered rules ``rules.yaml``; they say when each alert fires (with
the labels and annotations an operator reads) and when it must stay quiet.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import promql
from tests.deploy.helm import CHART_DIR
from tests.requires import PROMETHEUS_HINT, executable

ALERT_TESTS = sorted((CHART_DIR / "tests" / "alerts").glob("*.yaml"))


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the chart's alerts (default values) as ``rules.yaml``."""
    directory = tmp_path_factory.mktemp("alerts")
    promql.write_rule_file(directory / "rules.yaml")
    return directory


def _cases(path: Path) -> list[dict[str, Any]]:
    return [
        case
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
    ]


def test_every_alert_has_a_test_that_fires_and_one_that_stays_quiet() -> None:
    alerts = {rule["alert"] for group in promql.rule_groups() for rule in group["rules"]}
    assert {path.stem for path in ALERT_TESTS} == alerts
    for path in ALERT_TESTS:
        cases = _cases(path)
        assert {case["alertname"] for case in cases} == {path.stem}
        assert any(case.get("exp_alerts") for case in cases), f"{path.name} never fires"
        assert any(not case.get("exp_alerts") for case in cases), f"{path.name} never stays quiet"


@pytest.mark.parametrize("path", ALERT_TESTS, ids=lambda path: path.stem)
def test_alert(path: Path, rules_dir: Path) -> None:
    promtool = executable("promtool", PROMETHEUS_HINT)
    shutil.copy(path, rules_dir / path.name)
    result = subprocess.run(
        [promtool, "test", "rules", path.name],
        cwd=rules_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    (expr,) = [
        rule["expr"]
        for group in promql.rule_groups()
        for rule in group["rules"]
        if rule["alert"] == path.stem
    ]
    assert result.returncode == 0, (
        f"promtool test rules {path.name} failed for the expression\n{expr}\n"
        f"{result.stdout}{result.stderr}"
    )
