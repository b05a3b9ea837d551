"""The quote preview over HTTP (``GET /stocks/{symbol}``): the item, the band a
buy is accepted in (buys at both edges succeed, one ledger step outside is 422),
including against a vendor that checks its band in binary floating point."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.vendorapi.simulator import Simulator
from service.vendorapi.simulator.market import within_band
from tests.buys_support import STEADY_REPRICE_SECONDS, at_price, ledger, post_buy, vendor_buys

STEP = Decimal("0.000001")  # the ledger's six decimals
# Longer than the simulator's steady cycle: a quote read once stays fresh, so
# a second preview is a cache hit, and validUntil lies ahead.
CYCLE_SECONDS = 2 * STEADY_REPRICE_SECONDS


@pytest.fixture
def client(client_with: Callable[..., FlaskClient], simulator: Simulator) -> FlaskClient:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    return client_with(cache_ttl_seconds=CYCLE_SECONDS)


def preview(client: FlaskClient, symbol: str) -> dict[str, Any]:
    response = client.get(f"/stocks/{symbol}")
    assert response.status_code == 200, response.json
    body = response.json
    assert body is not None
    return body


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def assert_band_is_what_a_buy_accepts(
    client: FlaskClient, simulator: Simulator, symbol: str, band: dict[str, str]
) -> None:
    low, high = Decimal(band["min"]), Decimal(band["max"])
    answers = [
        (price, post_buy(client, price, 1, symbol=symbol).status_code)
        for price in (low, high, low - STEP, high + STEP)
    ]
    assert answers == [(low, 201), (high, 201), (low - STEP, 422), (high + STEP, 422)]
    orders = [Decimal(order["price"]) for order in simulator.orders()]
    assert orders == [low, high]  # the refused prices never reached the vendor


def test_the_preview_is_the_item_its_band_and_until_when(
    client: FlaskClient, simulator: Simulator
) -> None:
    market = simulator.price("AAPL")
    first = preview(client, "aapl")
    calls = simulator.stats()["requests"]
    second = preview(client, "AAPL")

    assert {key: first[key] for key in ("symbol", "name", "sector")} == {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "sector": "Technology",
    }
    assert Decimal(first["price"]) == market
    low, high = Decimal(first["band"]["min"]), Decimal(first["band"]["max"])
    # ±2 % exactly, in the ledger's six decimals (the plain vendor checks exactly)
    assert market * Decimal("0.98") <= low <= market * Decimal("0.98") + STEP
    assert market * Decimal("1.02") - STEP <= high <= market * Decimal("1.02")
    assert moment(first["validUntil"]) == moment(first["lastUpdated"]) + timedelta(
        seconds=CYCLE_SECONDS
    )
    assert first["meta"]["cache"] == "miss"
    assert second["meta"]["cache"] == "hit"
    assert second["meta"]["asOf"] == first["meta"]["asOf"]
    assert second["meta"]["ageSeconds"] >= 0
    assert {key: second[key] for key in ("price", "band", "validUntil")} == {
        key: first[key] for key in ("price", "band", "validUntil")
    }
    assert simulator.stats()["requests"] == calls  # the second was cached
    assert_band_is_what_a_buy_accepts(client, simulator, "AAPL", first["band"])


def test_at_a_quarter_the_band_leaves_out_the_edges_a_float_vendor_refuses(
    client: FlaskClient, simulator: Simulator
) -> None:
    at_price(simulator, "PNNY", Decimal("0.25"))
    simulator.configure(float_band=True)

    band = preview(client, "PNNY")["band"]

    assert band == {"min": "0.245001", "max": "0.254999"}
    assert_band_is_what_a_buy_accepts(client, simulator, "PNNY", band)
    # The exact 2 % edges, which the float vendor refuses, are refused here
    # first, with no order sent.
    for edge in ("0.245", "0.255"):
        assert not within_band(Decimal(edge), Decimal("0.25"), in_floats=True)
        assert post_buy(client, edge, 1, symbol="PNNY").status_code == 422
    assert vendor_buys(simulator) == 2  # the two buys at the edges


def _float_narrowed_stock(simulator: Simulator) -> tuple[str, Decimal, Decimal]:
    """Move through repricing cycles until some stock's exact 2 % edge is one
    the float-checking vendor refuses; its symbol, price and
    that edge."""
    for _ in range(200):
        for symbol in simulator.symbols():
            market = simulator.price(symbol)
            for edge in (
                (market * Decimal("0.98")).quantize(STEP, ROUND_CEILING),
                (market * Decimal("1.02")).quantize(STEP, ROUND_FLOOR),
            ):
                if within_band(edge, market) and not within_band(edge, market, in_floats=True):
                    return symbol, market, edge
        simulator.advance(STEADY_REPRICE_SECONDS)
    raise AssertionError("no stock ever priced at a float-sensitive edge")


def test_an_edge_the_float_vendor_would_refuse_is_outside_the_band(
    client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(float_band=True)
    symbol, market, refused_edge = _float_narrowed_stock(simulator)

    band = preview(client, symbol)["band"]
    low, high = Decimal(band["min"]), Decimal(band["max"])

    assert not low <= refused_edge <= high
    assert abs(refused_edge - market) <= Decimal("0.02") * market  # exactly, it is inside
    assert_band_is_what_a_buy_accepts(client, simulator, symbol, band)
    response = post_buy(client, refused_edge, 1, symbol=symbol)
    assert response.status_code == 422
    assert response.json is not None
    assert response.json["error"]["details"]["minPrice"] == band["min"]
    assert response.json["error"]["details"]["maxPrice"] == band["max"]
    assert f"accepted band {band['min']}–{band['max']}" in response.json["error"]["message"]
    assert [row.status for row in ledger()].count("rejected") == 3


def test_an_unknown_symbol_is_a_404_and_a_malformed_one_a_400(
    client: FlaskClient, simulator: Simulator
) -> None:
    unknown = client.get("/stocks/NOPE")
    assert unknown.status_code == 404
    assert unknown.json is not None
    assert unknown.json["error"]["code"] == "unknown_symbol"
    malformed = client.get("/stocks/not%20a%20symbol")
    assert malformed.status_code == 400
    assert malformed.json is not None
    assert list(malformed.json["error"]["details"]["fields"]) == ["symbol"]
    assert ledger() == []  # a preview records nothing


def test_the_preview_is_rate_limited_like_every_endpoint(
    client_with: Callable[..., FlaskClient],
) -> None:
    client = client_with(rate_limit_enabled=True, rate_limit="2/minute")
    answers = [client.get("/stocks/AAPL").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
