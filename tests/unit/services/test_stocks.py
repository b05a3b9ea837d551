"""Stock prices for the buy path: what the listing's page cache changes for it."""

from __future__ import annotations

import base64

import pytest
import redis
import responses
from flask import Flask

from service.services import stocks
from service.vendorapi.errors import UnknownSymbol, VendorBadResponse
from service.vendorapi.simulator import Simulator


def test_a_price_look_up_warms_the_listing(app: Flask, simulator: Simulator) -> None:
    quote = stocks.market_price("AAPL")
    assert quote.price == simulator.price("AAPL")
    calls = simulator.stats()["requests"]["list"]
    page_of_aapl = stocks.known_token("AAPL") or None
    listing = stocks._load_page(page_of_aapl, from_client=False)
    assert listing[1] == stocks.HIT
    assert simulator.stats()["requests"]["list"] == calls


@responses.activate
def test_an_unreadable_quote_is_a_bad_response_not_an_unknown_symbol(app: Flask) -> None:
    base = app.extensions["settings"].vendor_base_url
    responses.get(
        f"{base}/stocks",
        json={"status": 200, "data": {"items": [{"symbol": "AAPL", "price": "n/a"}]}},
    )
    with pytest.raises(VendorBadResponse):
        stocks.market_price("AAPL")
    assert len(responses.calls) == 1  # no walk of the catalogue


def test_a_stale_page_token_falls_back_to_walking_the_catalogue(
    app: Flask, simulator: Simulator, redis_client: redis.Redis
) -> None:
    # The map points AAPL at a token the vendor refuses (a page that is gone).
    gone = base64.b64encode(b'{"symbol":"GONE"}').decode()
    redis_client.hset(stocks.TOKEN_MAP_KEY, "AAPL", gone)

    quote = stocks.market_price("AAPL")

    assert quote.price == simulator.price("AAPL")
    assert stocks.known_token("AAPL") != gone  # the walk repaired the map


def test_a_symbol_the_catalogue_does_not_list_costs_no_vendor_walk(
    app: Flask, simulator: Simulator
) -> None:
    stocks.list_stocks(search="a")  # stores the catalogue (a walk, once)
    calls = simulator.stats()["requests"]["list"]

    for _ in range(3):
        with pytest.raises(UnknownSymbol):
            stocks.market_price("ZZZZ")

    assert simulator.stats()["requests"]["list"] == calls
