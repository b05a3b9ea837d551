"""Fixtures of the HTTP-level tests: app clients with chosen settings, a real
gunicorn (``python -m gunicorn -c python:service.gunicorn_conf``) for tests that
need several worker processes, and a private redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from service.vendorapi.simulator import SimulatorServer
from tests.bench.harness import RedisServer
from tests.functional.servers import ROOT, Gunicorn, free_port

START_SECONDS = 30


@pytest.fixture
def gunicorn(
    database_url: str, redis_url: str, simulator_server: SimulatorServer, tmp_path: Path
) -> Iterator[Callable[..., Gunicorn]]:
    """Start gunicorn with ``start(app="service.wsgi:app", **env)``.

    The environment points at the test database, the test Redis and the
    simulator, with two workers on 127.0.0.1 and the service's defaults
    otherwise (rate and concurrency limits on); keyword arguments override
    single variables (``None`` unsets one, so the service's default applies).
    ``start`` returns once ``/healthz`` answers; every server is stopped at
    the end of the test.
    """
    servers: list[Gunicorn] = []

    def start(app: str = "service.wsgi:app", **overrides: str | None) -> Gunicorn:
        port = free_port()
        name = f"gunicorn-{len(servers)}"
        settings: dict[str, str | None] = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "VENDOR_BASE_URL": simulator_server.url,
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": "2",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / name / "metrics"),
            "LOG_LEVEL": "warning",
            **overrides,
        }
        env = {key: value for key, value in settings.items() if value is not None}
        # gunicorn_conf's default when the variable is unset.
        default_metrics_dir = Path(tempfile.gettempdir()) / f"trading-metrics-{port}"
        log = tmp_path / name / "stderr.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", app],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        server = Gunicorn(
            f"http://127.0.0.1:{port}",
            process,
            Path(env.get("PROMETHEUS_MULTIPROC_DIR") or default_metrics_dir),
            log,
        )
        servers.append(server)
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                requests.get(server.url + "/healthz", timeout=1).raise_for_status()
                return server
            except requests.RequestException:
                assert process.poll() is None, server.log_tail()
                assert time.monotonic() < deadline, f"gunicorn did not start\n{server.log_tail()}"
                time.sleep(0.2)

    yield start
    for server in servers:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A throw-away ``redis-server`` on a free port (no persistence)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture
def client_with(make_app: Callable[..., Flask]) -> Iterator[Callable[..., FlaskClient]]:
    """``client_with(**settings)``: a test client of an app with those settings,
    whose app context stays pushed for the test (to read the database)."""
    with ExitStack() as contexts:

        def build(**overrides: object) -> FlaskClient:
            app = make_app(**overrides)
            contexts.enter_context(app.app_context())
            return app.test_client()

        yield build
