"""Single-flight page loads against the simulator over HTTP and a real Redis."""

from __future__ import annotations

import pytest
import redis
import redis.client
from flask import Flask

from service.marketdata import HIT, MISS, fill, store
from service.services import stocks
from service.vendorapi.simulator import Simulator


def _list_calls(simulator: Simulator) -> int:
    return simulator.stats()["requests"]["list"]


def test_a_price_look_up_warms_the_listing(app: Flask, simulator: Simulator) -> None:
    quote = stocks.market_price("AAPL")
    assert quote.price == simulator.price("AAPL")
    calls = _list_calls(simulator)
    page_of_aapl = store.known_token("AAPL") or None
    _, result = fill.load_page(page_of_aapl)
    assert result == HIT
    assert _list_calls(simulator) == calls


def test_a_redis_failure_while_waiting_on_a_fetch_fetches_directly(
    app: Flask, simulator: Simulator, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another caller holds the first page's fill lock and nothing is cached;
    # then Redis fails while this caller waits: it must not answer 503.
    redis_client.set(store.lock_key(None), "another-worker", ex=60)

    def redis_down(*_args: object, **_kwargs: object) -> None:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(redis.client.Pipeline, "execute", redis_down)
    cached, result = fill.load_page(None)

    assert cached.page.items
    assert result == MISS
    assert _list_calls(simulator) == 1
