"""What the rate and concurrency limits add to each request, on real Redis.

Runs one app with the limits on and one with them off (``RATE_LIMIT_ENABLED``)
against the same trivial route, in alternating rounds through the WSGI test
client (no network between client and app, so the difference is the limits'
own cost), and counts the Redis round trips the limits make per request.
Target: one round trip for the rate limit, one to take a slot and one to give
it back; at most 1 ms in all on loopback.

    python -m tests.bench.bench_limits [--requests 5000] [--rounds 10]

Redis: ``BENCH_REDIS_URL``, else ``TEST_REDIS_URL``, else
``redis://127.0.0.1:6379/15``. The rate key it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import redis
from flask import Flask

from service.app import create_app
from service.config import Settings
from service.ratelimit import RATE_STORAGE_PREFIX

# High enough that no request is refused: this measures the admitted path.
# (The default 10/second keeps a 10-entry window; this one holds thousands,
# so the figures are an upper bound.)
BENCH_RATE = "100000/second"


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
        rate_limit=BENCH_RATE,
        max_concurrent_requests=1000,
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
            raise SystemExit(f"request refused ({response.status_code}): raise BENCH_RATE")
    return timings


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="per variant")
    parser.add_argument("--rounds", type=int, default=10, help="alternations of on and off")
    args = parser.parse_args()
    redis_url = os.environ.get(
        "BENCH_REDIS_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    client = redis.Redis.from_url(redis_url)
    ping = []
    for _ in range(1000):
        started = time.perf_counter()
        client.ping()
        ping.append(time.perf_counter() - started)

    on, off = _app(redis_url, enabled=True), _app(redis_url, enabled=False)
    _timed(on, 50)  # load the Lua scripts, open connections
    _timed(off, 50)
    per_round = max(1, args.requests // args.rounds)
    timings: dict[str, list[float]] = {"on": [], "off": []}
    round_trips = 0
    for _ in range(args.rounds):
        timings["off"] += _timed(off, per_round)
        before = CountingConnection.sent
        timings["on"] += _timed(on, per_round)
        round_trips += CountingConnection.sent - before
    for key in client.scan_iter(f"{RATE_STORAGE_PREFIX}:*"):
        client.delete(key)

    count = len(timings["on"])
    print(f"Redis {redis_url}; {count} requests per variant in {args.rounds} rounds")
    print(f"one Redis round trip (PING), median       {_ms(statistics.median(ping))}")
    for name in ("off", "on"):
        values = timings[name]
        quantiles = statistics.quantiles(values, n=100)
        print(
            f"limits {name:3}  median {_ms(statistics.median(values))}"
            f"  mean {_ms(statistics.fmean(values))}  p99 {_ms(quantiles[98])}"
        )
    added_median = statistics.median(timings["on"]) - statistics.median(timings["off"])
    added_mean = statistics.fmean(timings["on"]) - statistics.fmean(timings["off"])
    print(f"added by the limits     median {_ms(added_median)}  mean {_ms(added_mean)}")
    print(
        f"Redis round trips per request {round_trips / count:.2f}"
        " (rate hit 1, take a slot 1, give it back 1)"
    )
    verdict = "meets" if added_median <= 0.001 else "misses"
    print(f"{verdict} the target of at most 1 ms added on loopback")


if __name__ == "__main__":
    main()
