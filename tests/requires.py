"""What a test does when a server or tool it needs is missing."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

# How to get promtool and prometheus (the alert unit tests and the live scrape).
PROMETHEUS_HINT = "apt-get install -y prometheus (Debian; it brings prometheus and promtool)"


def missing(message: str) -> NoReturn:
    """Skip the test with ``message`` (how to get what is missing); under
    ``CI=true`` fail it instead, so CI never passes by skipping."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def executable(name: str, hint: str) -> str:
    """The path of the program ``name`` on ``PATH``; :func:`missing` with ``hint`` when absent."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed; {hint}")
    return path
