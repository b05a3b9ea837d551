"""Vendor calls per 1,000 ``GET /stocks`` requests spread over 10 pages.

Serves the simulator in-process (250 stocks, 25 per page: 10 pages), builds the
app against a real Redis, walks the 10 pages once to learn their tokens, then
sends 1,000 requests (the walk included) over them from a few threads, as
clients paging through the catalogue would. Responses are closed, as a WSGI
server closes them, so the next page is pre-cached as in production.

    python -m tests.bench.bench_listing_vendor_calls --redis-url redis://127.0.0.1:6379/14

The Redis database is flushed first: point it at a scratch database (default
``BENCH_REDIS_URL``, else ``TEST_REDIS_URL``, else ``redis://127.0.0.1:6379/15``;
never the service's ``REDIS_URL``).
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis

from service.app import create_app
from service.config import Settings
from service.vendorapi.simulator import Simulator, SimulatorConfig, serve
from tests.bench.harness import DEFAULT_REDIS_URL, Goal, print_table

PAGES = 10
PAGE_SIZE = 25


def measure(requests: int, threads: int, latency: float, redis_url: str) -> tuple[int, int]:
    """Send ``requests`` listing requests over the 10 pages; returns how many
    pages there were and how many vendor list calls they cost."""
    redis.Redis.from_url(redis_url).flushdb()
    config = SimulatorConfig(stocks=PAGES * PAGE_SIZE, page_size=PAGE_SIZE, latency=latency)
    with serve(Simulator(config)) as server:
        settings = Settings.from_env(
            {},
            database_url="sqlite://",
            redis_url=redis_url,
            vendor_base_url=server.url,
            rate_limit_enabled=False,
        )
        client = create_app(settings).test_client()

        def get(query: dict[str, Any]) -> dict[str, Any]:
            response = client.get("/stocks", query_string=query, buffered=True)
            if response.status_code != 200:
                raise SystemExit(f"GET /stocks answered {response.status_code}: {response.json}")
            body: dict[str, Any] = response.json  # type: ignore[assignment]
            return body

        queries: list[dict[str, Any]] = [{}]
        while (token := get(queries[-1])["nextToken"]) is not None:
            queries.append({"nextToken": token})
        remaining = [queries[i % len(queries)] for i in range(requests - len(queries))]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(get, remaining))
        calls = server.simulator.stats()["requests"]["list"]
    return len(queries), calls


def bench(quick: bool = False) -> list[Goal]:
    """The figure for ``python -m tests.bench.run`` (1,000 requests either way)."""
    pages, calls = measure(1000, 8, 0.05, DEFAULT_REDIS_URL)
    print_table(
        "Vendor calls of the listing (1,000 GET /stocks over 10 pages, 8 clients)",
        ["requests", "pages", "vendor list calls", "per 1,000 requests"],
        [[1000, pages, calls, float(calls)]],
    )
    return [Goal("vendor", "vendor calls per 1,000 listing requests (10 pages)", str(calls))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.05, help="vendor latency, seconds")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL")
        or os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    )
    args = parser.parse_args(argv)
    pages, calls = measure(args.requests, args.threads, args.latency, args.redis_url)
    per_thousand = calls * 1000 / args.requests
    print(
        f"listing: {args.requests} requests over {pages} pages -> "
        f"{calls} vendor calls ({per_thousand:.1f} per 1,000 requests)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
