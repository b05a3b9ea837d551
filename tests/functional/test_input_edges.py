"""Input at the edges: numbers Python parses but no price is, JSON built to
exhaust the parser, paths that are no symbol, and the headers every answer
carries. Each is a 400 in the JSON envelope (never a 500), costs no vendor
call and records nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, ledger, post_buy

DEEP = "[" * 1_000 + "]" * 1_000
HUGE_INT = "9" * 4_301  # over Python's 4,300-digit int conversion limit
NOT_A_PLAIN_DECIMAL = "Must be a decimal number such as 218.27"


def _raw_buy(client: FlaskClient, price: str, quantity: str = "1", symbol: str = "AAPL") -> Any:
    body = f'{{"userId": "alice", "price": {price}, "quantity": {quantity}}}'
    return client.post(f"/stocks/{symbol}/buy", data=body, content_type="application/json")


def _refused(response: TestResponse, simulator: Simulator) -> dict[str, Any]:
    """The 400's error object, after checking that nothing happened."""
    assert response.status_code == 400, response.get_data(as_text=True)
    assert response.json is not None
    error: dict[str, Any] = response.json["error"]
    assert error["code"] == "invalid_request"
    assert isinstance(error["details"]["fields"], dict)
    assert simulator.stats()["requests"] == {"list": 0, "buy": 0}
    assert ledger() == []
    return error


@pytest.mark.parametrize(
    ("price", "says"),
    [
        ('"1e999999999"', NOT_A_PLAIN_DECIMAL),
        ('"1e-999999999"', NOT_A_PLAIN_DECIMAL),
        ("1e999999999", "at most 30 digits before and after"),
        ("1e-999999999", "at most 30 digits before and after"),
        ('" 218.27 "', NOT_A_PLAIN_DECIMAL),
        ('"1_0"', NOT_A_PLAIN_DECIMAL),
        ('"١٢"', NOT_A_PLAIN_DECIMAL),  # Arabic-Indic digits: Decimal() reads 12
        ('"NaN"', NOT_A_PLAIN_DECIMAL),
        ('"Infinity"', NOT_A_PLAIN_DECIMAL),
        (f'"{HUGE_INT}"', "at most 30 digits before and after"),
    ],
)
def test_a_price_that_is_no_plain_decimal_is_a_400_naming_the_field(
    client: FlaskClient, simulator: Simulator, price: str, says: str
) -> None:
    error = _refused(_raw_buy(client, price), simulator)
    assert list(error["details"]["fields"]) == ["price"]
    assert says in error["details"]["fields"]["price"][0]


@pytest.mark.parametrize(
    ("price", "quantity", "says"),
    [
        ("NaN", "1", "NaN is not a JSON value"),
        ("Infinity", "1", "Infinity is not a JSON value"),
        ("-Infinity", "1", "-Infinity is not a JSON value"),
        (HUGE_INT, "1", "a number has more than 100 digits"),
        ("1", HUGE_INT, "a number has more than 100 digits"),
        ("1", f"-{HUGE_INT}", "a number has more than 100 digits"),
    ],
)
def test_a_body_python_parses_but_json_forbids_is_a_400_that_says_why(
    client: FlaskClient, simulator: Simulator, price: str, quantity: str, says: str
) -> None:
    error = _refused(_raw_buy(client, price, quantity), simulator)
    assert error["message"] == f"The request body is not valid JSON: {says}."


def test_json_nested_a_thousand_deep_is_a_400(client: FlaskClient, simulator: Simulator) -> None:
    body = f'{{"userId": "alice", "price": 1, "quantity": 1, "note": {DEEP}}}'
    response = client.post("/stocks/AAPL/buy", data=body, content_type="application/json")
    assert _refused(response, simulator)["message"] == "The request body is nested too deeply."


@pytest.mark.parametrize("quantity", ['" 1 "', '"1_0"', '"١"', "1.0", "true", "1e0"])
def test_a_quantity_must_be_a_json_integer(
    client: FlaskClient, simulator: Simulator, quantity: str
) -> None:
    error = _refused(_raw_buy(client, "1", quantity), simulator)
    assert list(error["details"]["fields"]) == ["quantity"]


@pytest.mark.parametrize("symbol", [".", "..", "-", "%2E%2E", "AAPL.", ".AAPL", "A..B", "-1", "1A"])
def test_a_path_that_is_no_symbol_is_a_400_without_a_vendor_call(
    client: FlaskClient, simulator: Simulator, symbol: str
) -> None:
    error = _refused(_raw_buy(client, "1", symbol=symbol), simulator)
    assert "Must be a stock symbol" in error["details"]["fields"]["symbol"][0]


def test_plain_decimals_and_real_symbol_shapes_are_still_accepted(
    client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    price = simulator.price("AAPL")
    assert post_buy(client, str(price)).status_code == 201
    assert post_buy(client, price).status_code == 201  # the same, as a JSON number
    unlisted = post_buy(client, str(price), symbol="brk.b")  # lower case is read as BRK.B
    assert (unlisted.status_code, unlisted.json) == (404, {"error": ANY})
    assert unlisted.get_json()["error"]["code"] == "unknown_symbol"


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/stocks?limit=1", "/nowhere"]
)
def test_every_answer_says_nosniff(client: FlaskClient, simulator: Simulator, path: str) -> None:
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-store" not in response.headers.get("Cache-Control", "")  # shared data


def test_user_data_is_never_stored_by_a_cache(client: FlaskClient, simulator: Simulator) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    bought = post_buy(client, simulator.price("AAPL"))
    refused = post_buy(client, Decimal("0.01"))
    answers = [
        bought,
        refused,
        _raw_buy(client, '"x"'),
        client.get("/users/alice/portfolios"),
        client.get("/users/nobody/portfolios"),
    ]
    assert [answer.status_code for answer in answers] == [201, 422, 400, 200, 200]
    for answer in answers:
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
