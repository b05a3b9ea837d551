"""Cached listing throughput: ``GET /stocks`` under gunicorn against bare Flask.

The service and the bare Flask JSON endpoint (``tests.bench.bare_app``) run
under the same gunicorn configuration (2 workers × 8 threads), side by side,
and are loaded in alternating rounds so that both see the same machine. The
service has its page cache warm and both global limits configured but set
high, so every request goes through the limiter and the cache and none is
refused. Goals: the service serves at least 50 % of bare Flask's rate, and
spends at most twice its server CPU per request (user + system time of
gunicorn's processes, read from ``/proc`` before and after each round).

A second table says where the service's time goes: the CPU time of one cached
request in-process (WSGI test client, best of several runs), whole and by
part, with the limits on and off, beside bare Flask's.

    python -m tests.bench.run --only listing [--quick]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from service.app import create_app
from service.config import Settings
from service.extensions import redis_store
from service.marketdata import codec, store
from service.schemas.stocks import DEFAULT_LIMIT, StockListingSchema
from service.services import stocks
from service.vendorapi.simulator import Simulator, SimulatorConfig, serve
from tests.bench import bare_app
from tests.bench.harness import (
    DEFAULT_REDIS_URL,
    HIGH_CONCURRENCY_LIMIT,
    HIGH_RATE_LIMIT,
    BenchmarkError,
    Goal,
    LoadResult,
    flush_redis,
    gunicorn_process,
    load,
    print_table,
    service_env,
    simulator_process,
)

GOAL_RATIO = 0.5
GOAL_CPU_RATIO = 2.0  # server CPU per request, service ÷ bare Flask
CONCURRENCY = 16  # client threads: as many as gunicorn's 2 workers × 8 threads
BARE_APP = "tests.bench.bare_app:app"


def bench(quick: bool = False) -> list[Goal]:
    """Measure both servers and print the table; returns the throughput ratio."""
    rounds, per_round = (2, 1000) if quick else (3, 3000)
    flush_redis()
    runs: dict[str, list[LoadResult]] = {"bare Flask": [], "service": []}
    cpu: dict[str, float] = dict.fromkeys(runs, 0.0)
    with simulator_process() as vendor:
        env = service_env(vendor)
        with gunicorn_process(env) as service, gunicorn_process(env, app=BARE_APP) as bare:
            warm = load(service.url, ["/stocks"], total=200, concurrency=4)
            if warm.statuses != {200: warm.requests} or warm.errors:
                raise BenchmarkError(f"GET /stocks answered {dict(warm.statuses)} while warming")
            load(bare.url, ["/stocks"], total=200, concurrency=4)
            for _ in range(rounds):
                for name, server in (("bare Flask", bare), ("service", service)):
                    before = server.cpu_seconds()
                    runs[name].append(
                        load(server.url, ["/stocks"], total=per_round, concurrency=CONCURRENCY)
                    )
                    cpu[name] += server.cpu_seconds() - before
    results = {name: LoadResult.combined(parts) for name, parts in runs.items()}
    for name, result in results.items():
        if result.errors or set(result.statuses) != {200}:
            raise BenchmarkError(f"{name} answered {dict(result.statuses)}, {result.errors} errors")
    cpu_ms = {name: cpu[name] * 1000 / results[name].requests for name in results}
    bare_result, service_result = results["bare Flask"], results["service"]
    ratio = service_result.rate / bare_result.rate
    cpu_ratio = cpu_ms["service"] / cpu_ms["bare Flask"]
    print_table(
        "Cached listing throughput (GET /stocks, gunicorn 2 workers × 8 threads, "
        f"{CONCURRENCY} keep-alive clients)",
        ["server", "requests", "requests/s", "p50 ms", "p99 ms", "server CPU ms/request"],
        [
            [name, result.requests, result.rate, result.p50, result.p99, cpu_ms[name]]
            for name, result in results.items()
        ]
        + [["service / bare Flask", "", f"{ratio:.0%}", "", "", f"{cpu_ratio:.1f}×"]],
    )
    breakdown(quick)
    return [
        Goal(
            "listing",
            "cached GET /stocks rate, share of bare Flask",
            f"{ratio:.0%} ({service_result.rate:,.0f} vs {bare_result.rate:,.0f} req/s)",
            f"≥ {GOAL_RATIO:.0%}",
            ratio >= GOAL_RATIO,
        ),
        Goal(
            "listing",
            "server CPU per cached GET /stocks, service ÷ bare Flask",
            f"{cpu_ratio:.1f}× ({cpu_ms['service']:.2f} vs {cpu_ms['bare Flask']:.2f} ms)",
            f"≤ {GOAL_CPU_RATIO:.0f}×",
            cpu_ratio <= GOAL_CPU_RATIO,
        ),
        Goal(
            "listing",
            "cached GET /stocks p50 / p99",
            f"{service_result.p50:.1f} / {service_result.p99:.1f} ms "
            f"(bare {bare_result.p50:.1f} / {bare_result.p99:.1f} ms)",
        ),
    ]


def breakdown(quick: bool = False) -> None:
    """Print the CPU time of one cached ``GET /stocks`` in-process, by part."""
    repeat = 100 if quick else 300
    flush_redis()
    with serve(Simulator(SimulatorConfig())) as vendor:
        apps = {
            enabled: create_app(
                Settings.from_env(
                    {},
                    database_url="sqlite://",
                    redis_url=DEFAULT_REDIS_URL,
                    vendor_base_url=vendor.url,
                    rate_limit=HIGH_RATE_LIMIT,
                    max_concurrent_requests=HIGH_CONCURRENCY_LIMIT,
                    rate_limit_enabled=enabled,
                    log_level="WARNING",
                )
            )
            for enabled in (True, False)
        }
        clients = {enabled: app.test_client() for enabled, app in apps.items()}
        bare = bare_app.app.test_client()
        for client in clients.values():
            for _ in range(5):
                client.get("/stocks").close()  # the cache, the next page, the scripts
        with apps[False].test_request_context("/stocks"):
            listing = stocks.list_stocks(limit=DEFAULT_LIMIT)
            schema = StockListingSchema()
            raw = redis_store.client.get(store.page_key(None))
            assert raw is not None
            parts: list[tuple[str, Callable[[], object]]] = [
                ("bare Flask, the same JSON", lambda: bare.get("/stocks").close()),
                (
                    "service GET /healthz (request id, metrics; never limited)",
                    lambda: clients[True].get("/healthz").close(),
                ),
                ("service, limits off", lambda: clients[False].get("/stocks").close()),
                ("service, limits on", lambda: clients[True].get("/stocks").close()),
                (
                    "— dumping 25 items (marshmallow; once per page version now)",
                    lambda: schema.dump(listing),
                ),
                (
                    "— reading the page from Redis and parsing it (once per page and process now)",
                    lambda: store.read_page(None),
                ),
                (
                    "— parsing it alone (JSON, Decimal, datetime)",
                    lambda: codec.CachedPage.from_json(json.loads(raw)),
                ),
                ("— one Redis round trip (PING), client side", redis_store.client.ping),
            ]
            rows = [[label, _cpu_ms(action, repeat)] for label, action in parts]
    print_table(
        "Where a cached GET /stocks spends its CPU (in-process, WSGI test client, best of 5)",
        ["part", "CPU ms per request"],
        rows,
    )


def _cpu_ms(action: Callable[[], object], repeat: int) -> float:
    """CPU milliseconds of one ``action``: the best of five runs of ``repeat``."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(repeat):
            action()
        best = min(best, (time.process_time() - started) / repeat)
    return best * 1000
