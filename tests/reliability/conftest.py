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
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.bench.harness import (
    RedisServer,
    empty_ledger,
    gunicorn_process,
    simulator_admin,
    simulator_process,
)
from tests.reliability.proxy import TcpProxy
from tests.reliability.rig import SERVICE_ENV, Rig

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def vendor() -> Iterator[str]:
    """The simulator as a process (its prices stay put for a day); reset per test."""
    with simulator_process(reprice_seconds=86_400) as url:
        yield url


@pytest.fixture
def make_rig(database_url: str, vendor: str) -> Iterator[Callable[..., Rig]]:
    """Start the rig with ``make_rig(**env)`` (variables on top of ``SERVICE_ENV``)."""
    simulator_admin(vendor, "/_sim/reset", {})
    empty_ledger(database_url)
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
    empty_ledger(database_url)


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    """The rig with the default settings of the suite."""
    return make_rig()
