"""/metrics adds up every gunicorn worker (Prometheus multiprocess mode)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_metrics_count_requests_of_all_workers(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "RATE_LIMIT_ENABLED": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "warning",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:service.gunicorn_conf",
            "service.wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/healthz", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        with requests.Session() as session:
            for _ in range(60):
                # A new connection each time, so both workers take requests.
                response = requests.get(base + "/healthz", timeout=5)
                response.raise_for_status()
            text = session.get(base + "/metrics", timeout=5).text
            pids = {p.name for p in (tmp_path / "metrics").iterdir()}
        match = re.search(
            r"^trading_http_requests_total"
            r'\{endpoint="health.healthz",method="GET",status="200"\} (\S+)$',
            text,
            re.M,
        )
        assert match, text[:2000]
        assert float(match.group(1)) >= 61  # 60 + the readiness poll, from every worker
        assert len({p.split("_")[-1] for p in pids}) >= 2  # two workers wrote samples
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stderr:
            server.stderr.close()
