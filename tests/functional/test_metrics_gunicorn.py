"""/metrics adds up every gunicorn worker (Prometheus multiprocess mode)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import requests

from tests.functional.servers import Gunicorn


@pytest.mark.slow
def test_metrics_count_requests_of_all_workers(gunicorn: Callable[..., Gunicorn]) -> None:
    # No PROMETHEUS_MULTIPROC_DIR: gunicorn_conf's default, as the image runs it.
    server = gunicorn(
        GUNICORN_THREADS="2", RATE_LIMIT_ENABLED="false", PROMETHEUS_MULTIPROC_DIR=None
    )
    with requests.Session() as session:
        for _ in range(60):
            # A new connection each time, so both workers take requests.
            response = requests.get(server.url + "/healthz", timeout=5)
            response.raise_for_status()
        text = session.get(server.url + "/metrics", timeout=5).text
        pids = {p.name for p in server.metrics_dir.iterdir()}
    match = re.search(
        r"^trading_http_requests_total"
        r'\{endpoint="health.healthz",method="GET",status="200"\} (\S+)$',
        text,
        re.M,
    )
    assert match, text[:2000]
    assert float(match.group(1)) >= 61  # 60 + the readiness poll, from every worker
    assert len({p.split("_")[-1] for p in pids}) >= 2  # two workers wrote samples
