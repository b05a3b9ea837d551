"""The service's entry points run as their own processes, as a pod or a CronJob runs them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    *args: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python *args`` from the repository's root with exactly ``env``, whatever its status."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_flask(
    *command: str, env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``flask --app service.wsgi *command`` (a job's command line) with exactly ``env``."""
    return run_python("-m", "flask", "--app", "service.wsgi", *command, env=env, timeout=timeout)
