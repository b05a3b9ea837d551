"""Buys: the service's own time per buy, and the vendor calls a buy costs.

**Overhead.** The simulator answers every call after a fixed latency (no
jitter) and keeps its prices for the run; the service (gunicorn, 2 × 8, both
limits on but high) has fresh quotes cached, so a buy makes exactly one
vendor call (checked). The service's own time of a buy is its end-to-end
latency minus that fixed latency; the simulator measured directly over HTTP,
in the same run, shows what loopback HTTP adds on top. One client shows the
service's own latency, four show it with queueing on two cores. Goals (one
client): p99 of our own time ≤ 12 ms, and ≤ 4 ms of server CPU per buy (user
+ system time of gunicorn's processes, read from ``/proc`` before and after).

**Vendor calls.** How many vendor requests one buy costs when the service
knows nothing yet (it walks the catalogue to the symbol's page), when the
symbol → page-token map is known but the quote is stale (one page), and with
a fresh cached quote (none), counted by the simulator.

    python -m tests.bench.run --only buys --only vendor [--quick]
"""

from __future__ import annotations

from typing import Any

import redis

from service.app import create_app
from service.config import Settings
from service.extensions import db
from service.marketdata.store import known_token, page_key, quote_key
from service.services.tokens import refresh_tokens
from service.vendorapi.simulator import SIMULATOR_API_KEY, Simulator, SimulatorConfig, serve
from tests.bench.harness import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    BenchmarkError,
    Goal,
    LoadResult,
    empty_ledger,
    flush_redis,
    gunicorn_process,
    load,
    print_table,
    service_env,
    simulator_admin,
    simulator_process,
    vendor_quotes,
)

GOAL_P99_MS = 12.0
GOAL_CPU_MS = 4.0  # service CPU per buy, one client
VENDOR_LATENCY = 0.02
CLIENTS = (1, 4)  # one client: the service's own latency; four: with queueing on 2 cores
DAY = 86_400  # prices and quotes hold still for the run
WALK_PAGES = 40  # the catalogue of the vendor-calls figure


def bench(quick: bool = False) -> list[Goal]:
    """Measure our own time per buy, one client and several; print the table;
    return the one-client p99 against the goal."""
    count = 150 if quick else 400
    flush_redis()
    empty_ledger()
    rows: list[list[Any]] = []
    own: dict[int, LoadResult] = {}
    cpu_per_buy: dict[int, float] = {}
    with simulator_process(latency=VENDOR_LATENCY, reprice_seconds=DAY) as vendor:
        quotes = vendor_quotes(vendor)
        env = service_env(vendor, CACHE_TTL_SECONDS=str(DAY))
        with gunicorn_process(env) as service:
            load(service.url, ["/stocks"], total=1)  # caches the first page's quotes
            for clients in CLIENTS:
                direct = _buys(vendor, quotes, count, clients, {"x-api-key": SIMULATOR_API_KEY})
                before = simulator_admin(vendor, "/_sim/stats")["requests"]
                cpu = service.cpu_seconds()
                end_to_end = _buys(service.url, quotes, count, clients, {}, key=f"c{clients}")
                cpu_ms = cpu_per_buy[clients] = (service.cpu_seconds() - cpu) * 1000 / count
                after = simulator_admin(vendor, "/_sim/stats")["requests"]
                _check(direct, end_to_end, before, after, count)
                own[clients] = LoadResult(
                    seconds=end_to_end.seconds,
                    latencies=[latency - VENDOR_LATENCY for latency in end_to_end.latencies],
                )
                for name, result, cpu_column in (
                    ("the simulator directly (latency + HTTP)", direct, ""),
                    ("a buy through the service, end to end", end_to_end, f"{cpu_ms:.1f}"),
                    ("**the service's own time** (end to end − 20 ms)", own[clients], ""),
                ):
                    rows.append([clients, name, result.p50, result.p99, cpu_column])
    print_table(
        f"Buy overhead ({count} buys per row, simulator latency {VENDOR_LATENCY * 1000:.0f} ms "
        "fixed, fresh quotes cached: one vendor call per buy)",
        ["clients", "measured", "p50 ms", "p99 ms", "service CPU ms/buy"],
        rows,
    )
    alone, busy = own[CLIENTS[0]], own[CLIENTS[-1]]
    cpu_alone = cpu_per_buy[CLIENTS[0]]
    return [
        Goal(
            "buys",
            "service CPU per buy (fresh quote cached, one vendor call), one client",
            f"{cpu_alone:.1f} ms",
            f"≤ {GOAL_CPU_MS:.0f} ms",
            cpu_alone <= GOAL_CPU_MS,
        ),
        Goal(
            "buys",
            "a buy's own time (end to end − vendor latency), one client: p99 (p50)",
            f"{alone.p99:.1f} ms ({alone.p50:.1f} ms)",
            f"≤ {GOAL_P99_MS:.0f} ms p99",
            alone.p99 <= GOAL_P99_MS,
        ),
        Goal(
            "buys",
            f"our own time per buy, {CLIENTS[-1]} clients: p99 (p50)",
            f"{busy.p99:.1f} ms ({busy.p50:.1f} ms)",
        ),
    ]


def _check(
    direct: LoadResult,
    end_to_end: LoadResult,
    before: dict[str, int],
    after: dict[str, int],
    count: int,
) -> None:
    """Every buy succeeded, each with exactly one vendor call."""
    if direct.statuses != {200: count} or end_to_end.statuses != {201: count}:
        raise BenchmarkError(f"buys answered {end_to_end.statuses} (directly {direct.statuses})")
    calls = {operation: after[operation] - before[operation] for operation in after}
    if calls != {"list": 0, "buy": count}:
        raise BenchmarkError(f"expected one vendor call per buy, the vendor counted {calls}")


def bench_vendor_calls(quick: bool = False) -> list[Goal]:
    """Count the vendor calls of one buy in the three states of the cache."""
    symbols_per_state = 5 if quick else 10
    flush_redis()
    empty_ledger()
    config = SimulatorConfig(stocks=WALK_PAGES * 25, page_size=25, reprice_seconds=DAY)
    with serve(Simulator(config)) as server:
        simulator = server.simulator
        catalogue = simulator.symbols()
        step = len(catalogue) // symbols_per_state
        chosen = catalogue[step // 2 :: step][:symbols_per_state]
        settings = Settings.from_env(
            {},
            database_url=DEFAULT_DATABASE_URL,
            redis_url=DEFAULT_REDIS_URL,
            vendor_base_url=server.url,
            cache_ttl_seconds=DAY,
            rate_limit_enabled=False,
        )
        app = create_app(settings)
        client = app.test_client()
        store = redis.Redis.from_url(DEFAULT_REDIS_URL)
        rows: list[list[Any]] = []
        quantity = 0

        def buys(state: str) -> float:
            nonlocal quantity
            calls = 0
            for symbol in chosen:
                if state == "map known, quote stale":
                    # The quote and its page have expired; the map still names the page.
                    with app.app_context():
                        token = known_token(symbol)
                    store.delete(quote_key(symbol), page_key(token or None))
                before = simulator.stats()["requests"]
                quantity += 1
                body = {"userId": "bench", "price": str(simulator.price(symbol)), "quantity": 1}
                response = client.post(f"/stocks/{symbol}/buy", json=body)
                if response.status_code != 201:
                    raise BenchmarkError(f"buy of {symbol} answered {response.status_code}")
                after = simulator.stats()["requests"]
                calls += sum(after.values()) - sum(before.values())
            per_buy = calls / len(chosen)
            rows.append([state, len(chosen), calls, per_buy])
            return per_buy

        try:
            cold = buys("nothing known (walks the catalogue)")
            with app.app_context():
                refresh_tokens(wait=lambda _state: 0.0)
            mapped = buys("map known, quote stale")
            cached = buys("fresh quote cached")
        finally:
            store.close()
            with app.app_context():
                for engine in db.engines.values():
                    engine.dispose()
    print_table(
        f"Vendor calls per buy (catalogue of {WALK_PAGES} pages, symbols spread over it)",
        ["state", "buys", "vendor calls", "per buy (incl. the order)"],
        rows,
    )
    return [
        Goal(
            "vendor",
            "vendor calls per buy: nothing known / map known / quote cached",
            f"{cold:.1f} / {mapped:.1f} / {cached:.1f}",
        )
    ]


def _buys(
    url: str,
    quotes: list[tuple[str, str]],
    count: int,
    clients: int,
    headers: dict[str, str],
    key: str | None = None,
) -> LoadResult:
    """``count`` buys of one share spread over ``quotes``, each at its quoted
    price; with ``key``, each with its own idempotency key."""
    picks = [quotes[index % len(quotes)] for index in range(count)]
    # The price as the exact JSON number the vendor quoted (it takes no strings).
    bodies = [
        f'{{"userId": "bench-{index % 10}", "price": {price}, "quantity": 1}}'
        for index, (_, price) in enumerate(picks)
    ]
    return load(
        url,
        [f"/stocks/{symbol}/buy" for symbol, _ in picks],
        total=count,
        concurrency=clients,
        method="POST",
        bodies=bodies,
        headers=headers,
        headers_for=(lambda index: {"Idempotency-Key": f"{key}-{index}"}) if key else None,
    )
