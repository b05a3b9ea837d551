"""The reliability suite (``make test-reliability``): the service under real
gunicorn (2 workers) with real PostgreSQL and Redis, while things break.

Not part of ``make test``: ``pytest`` collects only the ``testpaths`` of
pyproject.toml, and every test here is marked ``reliability``. Each test gets
a :class:`Rig`: gunicorn reaches PostgreSQL through a :class:`TcpProxy` the
test can cut (the shared server itself is never restarted), uses a
``redis-server`` of its own that the test can kill and start again, and
reaches the simulator through a second proxy ("vendor fully down"); the
simulator's fault knobs are steered through its admin routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.bench.harness import (
    RedisServer,
    ServerProcess,
    gunicorn_process,
    simulator_admin,
    simulator_process,
)
from tests.conftest import LEDGER_TABLES
from tests.reliability.proxy import TcpProxy

HERE = Path(__file__).parent
# The service's settings under test: short vendor timeouts and retry waits so
# that faults play out in seconds, a circuit that closes again quickly, and no
# request limits unless a test sets them.
SERVICE_ENV = {
    "VENDOR_TIMEOUT_SECONDS": "0.5",
    "VENDOR_RETRY_DELAYS": "0.05,0.1",
    "VENDOR_CIRCUIT_FAIL_MAX": "5",
    "VENDOR_CIRCUIT_RESET_SECONDS": "1",
    "RATE_LIMIT_ENABLED": "false",
    "GUNICORN_TIMEOUT": "30",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@dataclass
class Rig:
    """The service under test and the handles to break its dependencies."""

    service: ServerProcess
    vendor_url: str  # the simulator itself (its admin routes), not through the proxy
    vendor_proxy: TcpProxy
    database_proxy: TcpProxy
    redis: RedisServer
    database_url: str  # PostgreSQL directly, for the test's own checks

    @property
    def url(self) -> str:
        return self.service.url

    def configure_vendor(self, **knobs: Any) -> None:
        simulator_admin(self.vendor_url, "/_sim/config", knobs)

    def vendor_orders(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = simulator_admin(self.vendor_url, "/_sim/orders")["orders"]
        return orders

    def vendor_requests(self) -> dict[str, int]:
        stats: dict[str, int] = simulator_admin(self.vendor_url, "/_sim/stats")["requests"]
        return stats

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)


@pytest.fixture(scope="session")
def vendor() -> Iterator[str]:
    """The simulator as a process (its prices stay put for a day); reset per test."""
    with simulator_process(reprice_seconds=86_400) as url:
        yield url


@pytest.fixture
def make_rig(database_url: str, vendor: str) -> Iterator[Callable[..., Rig]]:
    """Start the rig with ``make_rig(**env)`` (variables on top of ``SERVICE_ENV``)."""
    simulator_admin(vendor, "/_sim/reset", {})
    _truncate(database_url)
    database = make_url(database_url)
    vendor_port = int(vendor.rsplit(":", 1)[1])
    with ExitStack() as stack:

        def start(**env: str) -> Rig:
            redis_server = stack.enter_context(RedisServer())
            database_proxy = stack.enter_context(
                TcpProxy((database.host or "127.0.0.1", database.port or 5432))
            )
            vendor_proxy = stack.enter_context(TcpProxy(("127.0.0.1", vendor_port)))
            proxied = database.set(host="127.0.0.1", port=database_proxy.port)
            service = stack.enter_context(
                gunicorn_process(
                    {
                        "DATABASE_URL": proxied.render_as_string(hide_password=False),
                        "REDIS_URL": redis_server.url,
                        "VENDOR_BASE_URL": f"http://127.0.0.1:{vendor_proxy.port}",
                        **SERVICE_ENV,
                        **env,
                    }
                )
            )
            return Rig(service, vendor, vendor_proxy, database_proxy, redis_server, database_url)

        yield start
    _truncate(database_url)


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """The rig with the default settings of the suite."""
    return make_rig()


def _truncate(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
