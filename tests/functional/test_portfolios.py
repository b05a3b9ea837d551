"""GET /users/{userId}/portfolios over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import update

from service.extensions import db
from service.marketdata.store import quote_key
from service.models import Holding
from service.models.base import utcnow
from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, at_price, post_buy
from tests.functional.test_health import DEAD_REDIS


@pytest.fixture(autouse=True)
def steady_prices(simulator: Simulator) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)


def _portfolios(client: FlaskClient, user_id: str = "alice") -> dict:
    response = client.get(f"/users/{user_id}/portfolios")
    assert response.status_code == 200
    assert response.json is not None
    body: dict = response.json
    return body


def test_a_user_without_purchases_has_no_portfolios(client: FlaskClient) -> None:
    assert _portfolios(client, "nobody") == {"userId": "nobody", "items": []}


@pytest.mark.parametrize("user_id", ["bad%20id", "x" * 65, "semi;colon"])
def test_an_invalid_user_id_is_a_400(client: FlaskClient, user_id: str) -> None:
    response = client.get(f"/users/{user_id}/portfolios")
    assert response.status_code == 400
    assert response.json is not None
    assert "userId" in response.json["error"]["details"]["fields"]


def test_holdings_with_average_price_cost_basis_and_market_value(
    client: FlaskClient, simulator: Simulator
) -> None:
    at_price(simulator, "PNNY", Decimal("0.25"))
    apple = simulator.price("AAPL")
    assert post_buy(client, Decimal("0.25"), 7, symbol="PNNY").status_code == 201
    # Six-decimal prices: the average of 3 shares does not end in 6 decimals.
    assert post_buy(client, apple + Decimal("0.000001"), 2).status_code == 201
    assert post_buy(client, apple, 1).status_code == 201
    assert post_buy(client, apple, 1, user_id="bob").status_code == 201
    calls = simulator.stats()["requests"]

    body = _portfolios(client)

    assert simulator.stats()["requests"] == calls  # no vendor call
    assert body["userId"] == "alice"
    (portfolio,) = body["items"]
    assert portfolio["name"] == "default"
    by_symbol = {holding["symbol"]: holding for holding in portfolio["holdings"]}
    assert sorted(by_symbol) == ["AAPL", "PNNY"]
    penny = by_symbol["PNNY"]
    assert penny["quantity"] == 7
    assert penny["costBasis"] == "1.75"
    assert penny["averagePrice"] == "0.25"
    assert penny["marketPrice"] == "0.25"
    assert penny["marketValue"] == "1.75"
    assert penny["priceAgeSeconds"] >= 0
    assert penny["priceAsOf"]
    apples = by_symbol["AAPL"]
    assert Decimal(apples["costBasis"]) == apple * 3 + Decimal("0.000002")
    # (3 × apple + 0.000002) / 3, to 6 decimals
    assert Decimal(apples["averagePrice"]) == apple + Decimal("0.000001")
    assert Decimal(portfolio["totals"]["costBasis"]) == Decimal("1.750002") + apple * 3
    assert Decimal(portfolio["totals"]["marketValue"]) == Decimal("1.75") + apple * 3


def test_market_fields_are_null_without_a_cached_price_and_show_their_age(
    client: FlaskClient, simulator: Simulator, redis_client: redis.Redis
) -> None:
    post_buy(client, simulator.price("AAPL"), 1)
    at_price(simulator, "PNNY", Decimal("0.25"))
    post_buy(client, Decimal("0.25"), 1, symbol="PNNY")
    cached = json.loads(redis_client.get(quote_key("AAPL")))  # type: ignore[arg-type]
    ten_minutes_ago = utcnow() - timedelta(minutes=10)
    cached["fetchedAt"] = ten_minutes_ago.isoformat()
    redis_client.set(quote_key("AAPL"), json.dumps(cached))
    redis_client.delete(quote_key("PNNY"))

    (portfolio,) = _portfolios(client)["items"]

    apple, penny = portfolio["holdings"]
    assert 600 <= apple["priceAgeSeconds"] < 660
    assert apple["priceAsOf"] == ten_minutes_ago.isoformat()
    assert (penny["marketPrice"], penny["marketValue"], penny["priceAsOf"]) == (None, None, None)
    assert portfolio["totals"]["marketValue"] is None
    assert Decimal(portfolio["totals"]["costBasis"]) == Decimal(apple["costBasis"]) + Decimal(
        "0.25"
    )


def test_portfolios_are_cached_and_a_buy_shows_at_once(
    client: FlaskClient, simulator: Simulator
) -> None:
    price = simulator.price("AAPL")
    post_buy(client, price, 1)
    assert _portfolios(client)["items"][0]["holdings"][0]["quantity"] == 1
    # A change behind the service's back is not seen: the answer comes from the cache …
    db.session.execute(update(Holding).values(quantity=1000))
    db.session.commit()
    assert _portfolios(client)["items"][0]["holdings"][0]["quantity"] == 1
    # … until a buy invalidates it.
    post_buy(client, price, 2)
    assert _portfolios(client)["items"][0]["holdings"][0]["quantity"] == 1002


def test_portfolios_are_served_without_redis(
    client_with: Callable[..., FlaskClient], simulator: Simulator
) -> None:
    client = client_with(redis_url=DEAD_REDIS)
    post_buy(client, simulator.price("AAPL"), 3)

    (portfolio,) = _portfolios(client)["items"]
    (holding,) = portfolio["holdings"]
    assert holding["quantity"] == 3
    assert holding["marketPrice"] is None  # no cache, and never a vendor call
