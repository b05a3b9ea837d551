"""Redis memory stays bounded: after traffic of every kind, every key the
service wrote expires, none is large, and every limiter key outlives every
cache key (the dev Redis evicts by ``volatile-ttl``: nearest expiry first)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import redis
from flask import Flask

from service.marketdata import store
from service.ratelimit import CONCURRENCY_KEY_PREFIX
from service.ratelimit.leases import LIMITER_KEY_SECONDS, ConcurrencyLimiter
from service.services import sweep, tokens
from service.services.orders import ABANDONED_AFTER
from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, pending, post_buy

# pybreaker writes the shared circuit state with plain SET, which drops any
# expiry: four fixed keys of a few bytes, never evicted under volatile-ttl
# (right for the circuit state), and the only keys without a TTL.
BREAKER_KEYS = {
    f"vendor:pybreaker:{name}" for name in ("state", "fail_counter", "success_counter", "opened_at")
}
# The jobs' records: read by alerts, rewritten at every run, kept a month.
RECORD_KEYS = {
    store.LAST_RUN_KEY,
    store.LAST_SUCCESS_KEY,
    sweep.LAST_SUCCESS_KEY,
    sweep.FINALISED_KEY,
}
LARGEST_KEY_BYTES = 64 * 1024  # the 120-stock catalogue is the largest, ~10 KiB


def _traffic(app: Flask, simulator: Simulator) -> None:
    """A bit of everything the service writes to Redis."""
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    client = app.test_client()
    first = client.get("/stocks?limit=30").get_json()  # pages, quotes, map, next-page claim
    client.get(f"/stocks?nextToken={first['nextToken']}")
    client.get("/stocks?search=a")  # the catalogue walk and its lock
    assert post_buy(client, simulator.price("AAPL")).status_code == 201
    assert post_buy(client, "10", symbol="ZZZZZZ").status_code == 404  # unknown symbol
    client.get("/users/alice/portfolios")  # the portfolio cache and its generation
    client.get("/readyz")  # the write probe
    with app.app_context():
        assert tokens.refresh_tokens().ok
        pending(age=ABANDONED_AFTER + timedelta(seconds=5))
        assert sweep.sweep() == 1


def _ttls(redis_client: redis.Redis) -> dict[str, int]:
    return {key.decode(): redis_client.ttl(key) for key in redis_client.scan_iter()}


def test_every_key_expires_and_stays_small(
    make_app: Callable[..., Flask], simulator: Simulator, redis_client: redis.Redis
) -> None:
    _traffic(make_app(rate_limit_enabled=True, rate_limit="1000/second"), simulator)
    ttls = _ttls(redis_client)

    assert "vendor:pybreaker:state" in ttls
    assert {key for key, ttl in ttls.items() if ttl < 0} == BREAKER_KEYS & set(ttls)
    sizes = {key: redis_client.memory_usage(key) or 0 for key in ttls}
    assert max(sizes.values()) < LARGEST_KEY_BYTES, max(sizes.items(), key=lambda kv: kv[1])
    written = {key.split(":")[0] for key in ttls}
    assert {"stocks", "portfolios", "buys", "health", "trading", "vendor"} <= written


def test_limiter_keys_outlive_every_cache_key(
    make_app: Callable[..., Flask], simulator: Simulator, redis_client: redis.Redis
) -> None:
    _traffic(make_app(rate_limit_enabled=True, rate_limit="1000/second"), simulator)
    # A concurrency slot is given back at the end of its request: hold one.
    slots = ConcurrencyLimiter(5, redis_client)
    slot = slots.acquire(f"{CONCURRENCY_KEY_PREFIX}:test")
    assert slot is not None
    ttls = _ttls(redis_client)
    slots.release(slot)

    limiter = {key: ttl for key, ttl in ttls.items() if key.startswith("trading:")}
    cache = {
        key: ttl
        for key, ttl in ttls.items()
        if key not in limiter and key not in RECORD_KEYS | BREAKER_KEYS
    }
    assert {key.split(":")[1] for key in limiter} == {"ratelimit", "concurrency"}
    assert min(limiter.values()) > LIMITER_KEY_SECONDS - 60
    assert max(cache.values()) < LIMITER_KEY_SECONDS - 60, max(cache.items(), key=lambda kv: kv[1])
