"""What the rate and concurrency limits add to each request, on real Redis.

Runs one app with the limits on and one with them off (``RATE_LIMIT_ENABLED``)
against the same trivial route, in alternating rounds through the WSGI test
client (no network between client and app, so the difference is the limits'
own cost), and counts the Redis round trips the limits make per request.
Target: one round trip for the rate hit and the slot (one Lua script, which
also gives back the previous request's slot); at most 0.3 ms added (median)
on loopback.

    python -m tests.bench.bench_limits [--requests 5000] [--rounds 10]

Redis: ``BENCH_REDIS_URL``, else ``TEST_REDIS_URL``, else
``redis://127.0.0.1:6379/15``. The rate key it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import redis
from flask import Flask

from service.app import create_app
from service.config import Settings
from service.ratelimit import RATE_STORAGE_PREFIX
from tests.bench.harness import (
    DEFAULT_REDIS_URL,
    HIGH_CONCURRENCY_LIMIT,
    HIGH_RATE_LIMIT,
    Goal,
    print_table,
)

# The limits are set so high that no request is refused: this measures the
# admitted path. (The default 10/second keeps a 10-entry window; this one
# holds thousands, so the figures are an upper bound.)
GOAL_ADDED_SECONDS = 0.0003
GOAL_ROUND_TRIPS = 2


class CountingConnection(redis.Connection):
    """A Redis connection that counts what it sends: one send, one round trip."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def _app(redis_url: str, enabled: bool) -> Flask:
    settings = Settings.from_env(
        {},
        database_url="sqlite://",
        redis_url=redis_url,
        rate_limit=HIGH_RATE_LIMIT,
        max_concurrent_requests=HIGH_CONCURRENCY_LIMIT,
        rate_limit_enabled=enabled,
        log_level="WARNING",
    )
    app = create_app(settings)
    app.add_url_rule("/probe", view_func=lambda: {"ok": True})
    app.extensions["redis"].connection_pool.connection_class = CountingConnection
    return app


def _timed(app: Flask, count: int) -> list[float]:
    client = app.test_client()
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.get("/probe")
        timings.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise SystemExit(f"request refused ({response.status_code}): raise HIGH_RATE_LIMIT")
    return timings


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.3f} ms"


@dataclass(frozen=True)
class LimitsCost:
    """Per-request latencies (seconds) with the limits on and off, a Redis PING
    for scale, and the Redis round trips the limits made per request."""

    ping: list[float]
    on: list[float]
    off: list[float]
    round_trips_per_request: float

    @property
    def added_median(self) -> float:
        return statistics.median(self.on) - statistics.median(self.off)

    @property
    def added_mean(self) -> float:
        return statistics.fmean(self.on) - statistics.fmean(self.off)


def measure(redis_url: str, requests: int = 5000, rounds: int = 10) -> LimitsCost:
    """Time ``requests`` requests per variant in ``rounds`` alternations."""
    client = redis.Redis.from_url(redis_url)
    ping = []
    for _ in range(1000):
        started = time.perf_counter()
        client.ping()
        ping.append(time.perf_counter() - started)

    on, off = _app(redis_url, enabled=True), _app(redis_url, enabled=False)
    _timed(on, 50)  # load the Lua scripts, open connections
    _timed(off, 50)
    per_round = max(1, requests // rounds)
    timings: dict[str, list[float]] = {"on": [], "off": []}
    round_trips = 0
    for _ in range(rounds):
        timings["off"] += _timed(off, per_round)
        before = CountingConnection.sent
        timings["on"] += _timed(on, per_round)
        round_trips += CountingConnection.sent - before
    for key in client.scan_iter(f"{RATE_STORAGE_PREFIX}:*"):
        client.delete(key)
    client.close()
    return LimitsCost(ping, timings["on"], timings["off"], round_trips / len(timings["on"]))


def bench(quick: bool = False) -> list[Goal]:
    """The figures for ``python -m tests.bench.run``."""
    cost = measure(DEFAULT_REDIS_URL, requests=1000 if quick else 5000)
    rows = [
        [
            f"limits {name}",
            statistics.median(values) * 1000,
            statistics.fmean(values) * 1000,
            statistics.quantiles(values, n=100)[98] * 1000,
        ]
        for name, values in (("off", cost.off), ("on", cost.on))
    ]
    rows.append(["one Redis round trip (PING)", statistics.median(cost.ping) * 1000, "", ""])
    print_table(
        f"Limiter cost (WSGI test client, trivial route, {len(cost.on)} requests per variant, "
        f"{cost.round_trips_per_request:.2f} Redis round trips per request)",
        ["variant", "median ms", "mean ms", "p99 ms"],
        rows,
    )
    return [
        Goal(
            "limits",
            "latency added by both limits, median (mean); Redis round trips per request",
            f"{cost.added_median * 1000:.3f} ms ({cost.added_mean * 1000:.3f} ms); "
            f"{cost.round_trips_per_request:.2f}",
            f"≤ {GOAL_ADDED_SECONDS * 1000:.1f} ms, ≤ {GOAL_ROUND_TRIPS} round trips",
            cost.added_median <= GOAL_ADDED_SECONDS
            and cost.round_trips_per_request <= GOAL_ROUND_TRIPS,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="per variant")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of on and off")
    args = parser.parse_args()
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    cost = measure(redis_url, args.requests, args.rounds)
    print(f"Redis {redis_url}; {len(cost.on)} requests per variant in {args.rounds} rounds")
    print(f"one Redis round trip (PING), median       {_ms(statistics.median(cost.ping))}")
    for name, values in (("off", cost.off), ("on", cost.on)):
        quantiles = statistics.quantiles(values, n=100)
        print(
            f"limits {name:3}  median {_ms(statistics.median(values))}"
            f"  mean {_ms(statistics.fmean(values))}  p99 {_ms(quantiles[98])}"
        )
    print(f"added by the limits     median {_ms(cost.added_median)}  mean {_ms(cost.added_mean)}")
    print(
        f"Redis round trips per request {cost.round_trips_per_request:.2f}"
        " (rate hit, slot and the previous request's slot back: 1)"
    )
    verdict = "meets" if cost.added_median <= GOAL_ADDED_SECONDS else "misses"
    print(f"{verdict} the target of at most {GOAL_ADDED_SECONDS * 1000:.1f} ms added on loopback")


if __name__ == "__main__":
    main()
