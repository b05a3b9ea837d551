"""The rig of a reliability test: the service and the handles to break what it needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from tests.bench.harness import RedisServer, ServerProcess, simulator_admin
from tests.reliability.proxy import TcpProxy

# The service's settings under test: short vendor timeouts and retry waits so
# that faults play out in seconds, a circuit that closes again quickly, no
# request limits unless a test sets them, and quotes that stay fresh as long
# as the simulator's prices hold still (a day), so a buy's one vendor call is
# its order once the quotes are cached.
SERVICE_ENV = {
    "CACHE_TTL_SECONDS": "86400",
    "VENDOR_TIMEOUT_SECONDS": "0.5",
    "VENDOR_RETRY_DELAYS": "0.05,0.1",
    "VENDOR_CIRCUIT_FAIL_MAX": "5",
    "VENDOR_CIRCUIT_RESET_SECONDS": "1",
    "RATE_LIMIT_ENABLED": "false",
    "GUNICORN_TIMEOUT": "30",
}


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

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)


@contextmanager
def in_background(work: Callable[[], Any]) -> Iterator[Future[Any]]:
    """Run ``work`` in a thread for the block; its result is waited for on exit."""
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(work)
        yield future
        future.result()
