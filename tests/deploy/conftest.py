"""Fixtures of the deployment tests: the chart rendered once per values file."""

from __future__ import annotations

import pytest

from tests.deploy import helm


@pytest.fixture(scope="session", params=list(helm.value_sets()))
def release(request: pytest.FixtureRequest) -> helm.Release:
    """The chart rendered with each tested values file (see helm.value_sets)."""
    return helm.release(request.param)


@pytest.fixture(scope="session")
def default_release() -> helm.Release:
    """The chart rendered with its default values."""
    return helm.release("default")


@pytest.fixture(scope="session")
def full_release() -> helm.Release:
    """The chart rendered with every optional object on (chart/ci/full-values.yaml)."""
    return helm.release("ci/full-values.yaml")
