"""Servers started as subprocesses for HTTP tests: gunicorn, a private redis-server."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Gunicorn:
    """A running gunicorn: its base ``url``, master ``process`` and metrics directory."""

    url: str
    process: subprocess.Popen[bytes]
    metrics_dir: Path
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass(frozen=True)
class RedisServer:
    """A redis-server of the test's own, which the test may stop."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
