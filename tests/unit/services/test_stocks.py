"""Stock prices for the buy path: what the listing's page cache changes for it."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
import redis
from flask import Flask

from service.marketdata import store
from service.schemas.stocks import DEFAULT_LIMIT
from service.services import stocks
from service.vendorapi.errors import UnknownSymbol, VendorBadResponse
from service.vendorapi.simulator import Simulator
from tests.vendor_stub import StubVendor


def test_an_unreadable_quote_is_a_bad_response_not_an_unknown_symbol(
    make_app: Callable[..., Flask], vendor_stub: StubVendor
) -> None:
    vendor_stub.answer(
        "GET",
        "/stocks",
        json_body={"status": 200, "data": {"items": [{"symbol": "AAPL", "price": "n/a"}]}},
    )
    app = make_app(vendor_base_url=vendor_stub.url)
    with app.app_context(), pytest.raises(VendorBadResponse):
        stocks.market_price("AAPL")
    assert len(vendor_stub.calls) == 1  # no walk of the catalogue


def test_a_stale_page_token_falls_back_to_walking_the_catalogue(
    app: Flask, simulator: Simulator, redis_client: redis.Redis
) -> None:
    # The map points AAPL at a token the vendor refuses (a page that is gone).
    gone = base64.b64encode(b'{"symbol":"GONE"}').decode()
    redis_client.hset(store.TOKEN_MAP_KEY, "AAPL", gone)

    quote = stocks.market_price("AAPL")

    assert quote.price == simulator.price("AAPL")
    assert store.known_token("AAPL") != gone  # the walk repaired the map


def test_a_symbol_the_catalogue_does_not_list_costs_no_vendor_walk(
    app: Flask, simulator: Simulator
) -> None:
    stocks.list_stocks(search="a", limit=DEFAULT_LIMIT)  # stores the catalogue (a walk, once)
    calls = simulator.stats()["requests"]["list"]

    for _ in range(3):
        with pytest.raises(UnknownSymbol):
            stocks.market_price("ZZZZ")

    assert simulator.stats()["requests"]["list"] == calls


def test_concurrent_price_look_ups_of_one_symbol_make_one_vendor_call(
    make_app: Callable[..., Flask], simulator: Simulator, redis_client: redis.Redis
) -> None:
    pods = [make_app() for _ in range(4)]
    with pods[0].app_context():
        stocks.market_price("AAPL")  # the map now knows AAPL's page
        token = store.known_token("AAPL")
    assert token is not None
    # The quote and its page have expired; the map still names the page.
    redis_client.delete(store.quote_key("AAPL"), store.page_key(token or None))
    simulator.configure(latency=0.3)
    calls = simulator.stats()["requests"]["list"]
    start = threading.Barrier(8)
    prices: list[Decimal] = []

    def buy_path(app: Flask) -> None:
        with app.app_context():
            start.wait()
            prices.append(stocks.market_price("AAPL").price)

    threads = [threading.Thread(target=buy_path, args=(pods[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert prices == [simulator.price("AAPL")] * 8
    assert simulator.stats()["requests"]["list"] - calls == 1
