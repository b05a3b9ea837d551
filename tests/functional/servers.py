"""Servers started as subprocesses for HTTP tests: gunicorn (a private redis-server is
:class:`tests.bench.harness.RedisServer`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.bench.harness import ROOT, free_port

__all__ = ["ROOT", "Gunicorn", "free_port"]


@dataclass(frozen=True)
class Gunicorn:
    """A running gunicorn: its base ``url``, master ``process`` and metrics directory."""

    url: str
    process: subprocess.Popen[bytes]
    metrics_dir: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]
