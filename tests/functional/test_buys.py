"""POST /stocks/{symbol}/buy over HTTP, against the vendor simulator and its fault knobs."""

from __future__ import annotations

import threading
import time
import types
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from service.app import create_app
from service.config import Settings
from service.extensions import db
from service.metrics import BUY_VENDOR_ATTEMPTS, BUYS, PRICE_CHECK_REJECTIONS
from service.models import Transaction
from service.models.base import utcnow
from service.money import price_band
from service.repositories import transactions
from service.services import outcomes, sweep
from service.services.orders import ABANDONED_AFTER, Outcome
from service.services.stocks import market_price
from service.vendorapi.client import VendorOrder
from service.vendorapi.simulator import Simulator
from tests.buys_support import (
    STEADY_REPRICE_SECONDS,
    at_price,
    buy_body,
    holdings,
    ledger,
    post_buy,
    summaries,
    vendor_buys,
)
from tests.functional.test_health import DEAD_POSTGRES, DEAD_REDIS


@pytest.fixture(autouse=True)
def steady_prices(simulator: Simulator) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry waits taken (recorded instead of slept)."""
    taken: list[float] = []
    monkeypatch.setattr("tenacity.nap.time", types.SimpleNamespace(sleep=taken.append))
    return taken


def _error(response: TestResponse) -> dict:
    assert response.json is not None
    error: dict = response.json["error"]
    return error


# --- success ------------------------------------------------------------------


def test_buy_records_the_transaction_and_the_holding(
    client: FlaskClient, simulator: Simulator
) -> None:
    price = simulator.price("AAPL")
    response = post_buy(client, price, 3, symbol="aapl")

    assert response.status_code == 201
    body = response.json
    assert body is not None
    assert body["symbol"] == "AAPL"
    assert body["userId"] == "alice"
    assert body["quantity"] == 3
    assert body["status"] == "succeeded"
    assert Decimal(body["requestedPrice"]) == price
    assert Decimal(body["marketPrice"]) == price
    assert Decimal(body["executedPrice"]) == price
    assert Decimal(body["total"]) == price * 3
    assert body["createdAt"]
    assert body["completedAt"]
    assert (body["reason"], body["attempts"], body["idempotencyKey"], body["resolution"]) == (
        None,
        1,
        None,
        None,
    )
    (row,) = ledger()
    assert (row.id, row.status, row.attempts, row.vendor_status) == (
        body["id"],
        "succeeded",
        1,
        200,
    )
    assert row.total == price * 3
    (order,) = simulator.orders()
    assert (order["symbol"], order["quantity"], order["price"]) == ("AAPL", 3, price)
    holding = holdings()["AAPL"]
    assert (holding.quantity, holding.cost_basis) == (3, price * 3)
    summary = summaries()[("succeeded", "", "AAPL")]
    assert (summary.count, summary.quantity, summary.amount) == (1, 3, price * 3)


def test_money_is_exact_on_a_quarter_dollar_stock(
    client: FlaskClient, simulator: Simulator
) -> None:
    at_price(simulator, "PNNY", Decimal("0.25"))
    # The exact ±2 % band of 0.25 is 0.245–0.255; a float-checking vendor
    # refuses both edges, so the band is 0.245001–0.254999.
    quarter = post_buy(client, Decimal("0.25"), 7, symbol="PNNY")
    low_edge = post_buy(client, "0.245001", 1000, symbol="PNNY")
    refused = [
        post_buy(client, price, 1, symbol="PNNY")
        for price in (Decimal("0.245"), "0.255", "0.244999", "0.26")
    ]

    assert quarter.status_code == 201
    assert quarter.json is not None
    assert quarter.json["total"] == "1.75"
    assert low_edge.status_code == 201
    assert low_edge.json is not None
    assert low_edge.json["total"] == "245.001"
    for rejected in refused:
        assert rejected.status_code == 422
        error = _error(rejected)
        assert error["code"] == "price_out_of_tolerance"
        assert error["details"]["marketPrice"] == "0.25"
        assert (error["details"]["minPrice"], error["details"]["maxPrice"]) == (
            "0.245001",
            "0.254999",
        )
    holding = holdings()["PNNY"]
    assert (holding.quantity, holding.cost_basis) == (1007, Decimal("246.751"))
    assert vendor_buys(simulator) == 2


def test_six_decimal_prices_inside_the_band_are_bought_exactly(
    client: FlaskClient, simulator: Simulator
) -> None:
    price = simulator.price("AAPL") + Decimal("0.000001")
    response = post_buy(client, price, 3)

    assert response.status_code == 201
    assert response.json is not None
    assert Decimal(response.json["executedPrice"]) == price
    assert Decimal(response.json["total"]) == price * 3
    assert holdings()["AAPL"].cost_basis == price * 3


def test_a_json_number_is_read_without_float_rounding(
    client: FlaskClient, simulator: Simulator
) -> None:
    # As a float this is 220.1 exactly; read as a decimal it has 19 decimals.
    response = client.post(
        "/stocks/AAPL/buy",
        data='{"userId": "alice", "price": 220.1000000000000000001, "quantity": 1}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "price" in _error(response)["details"]["fields"]
    price = simulator.price("AAPL") + Decimal("0.000001")
    accepted = post_buy(client, price, 1)
    assert accepted.status_code == 201
    assert accepted.json is not None
    assert accepted.json["requestedPrice"] == format(price, "f")
    assert ledger()[-1].requested_price == price


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "body", "field"),
    [
        ("AAPL", buy_body("1", 1, user_id="bad id"), "userId"),
        ("AAPL", buy_body("1", 1, user_id="x" * 65), "userId"),
        ("AAPL", buy_body("1", 1, user_id="alice\n"), "userId"),
        ("AAPL", buy_body("0", 1), "price"),
        ("AAPL", buy_body("-1", 1), "price"),
        ("AAPL", buy_body("1.0000001", 1), "price"),
        ("AAPL", buy_body("abc", 1), "price"),
        ("AAPL", buy_body("NaN", 1), "price"),
        ("AAPL", buy_body("100000000", 1), "price"),
        ("AAPL", '{"userId": "alice", "price": true, "quantity": 1}', "price"),
        ("AAPL", buy_body("1", 0), "quantity"),
        ("AAPL", buy_body("1", 1_000_001), "quantity"),
        ("AAPL", '{"userId": "alice", "price": 1, "quantity": 1.5}', "quantity"),
        ("AAPL", '{"userId": "alice", "price": 1, "quantity": "2"}', "quantity"),
        ("AAPL", '{"userId": "alice", "price": 1}', "quantity"),
        ("AAPL", '{"userId": "alice", "price": 1, "quantity": 1, "side": "sell"}', "side"),
        ("TOOLONGSYMB", buy_body("1", 1), "symbol"),
        ("AA_PL", buy_body("1", 1), "symbol"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_calls_no_vendor(
    client: FlaskClient, simulator: Simulator, symbol: str, body: str, field: str
) -> None:
    response = client.post(f"/stocks/{symbol}/buy", data=body, content_type="application/json")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert field in error["details"]["fields"]
    assert simulator.stats()["requests"] == {"list": 0, "buy": 0}
    assert ledger() == []


def test_malformed_json_and_bad_idempotency_keys_are_400s(
    client: FlaskClient, simulator: Simulator
) -> None:
    broken = client.post("/stocks/AAPL/buy", data="{", content_type="application/json")
    assert broken.status_code == 400
    for key in ("", "k" * 256):
        response = post_buy(client, simulator.price("AAPL"), key=key)
        assert response.status_code == 400
        assert "Idempotency-Key" in _error(response)["details"]["fields"]
    assert vendor_buys(simulator) == 0


# --- each final status ------------------------------------------------------------


def test_price_outside_tolerance_is_rejected_without_an_order(
    client: FlaskClient, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    market = simulator.price("AAPL")
    before = PRICE_CHECK_REJECTIONS._value.get()
    response = post_buy(client, market * Decimal("1.021"), 1)

    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "price_out_of_tolerance"
    details = error["details"]
    assert Decimal(details["marketPrice"]) == market
    assert (Decimal(details["minPrice"]), Decimal(details["maxPrice"])) == price_band(
        market, Decimal("0.02")
    )
    (row,) = ledger()
    assert (row.status, row.reason, row.market_price, row.attempts) == (
        "rejected",
        "price_out_of_tolerance",
        market,
        0,
    )
    assert details["transactionId"] == row.id
    assert vendor_buys(simulator) == 0
    assert PRICE_CHECK_REJECTIONS._value.get() == before + 1
    assert summaries()[("rejected", "price_out_of_tolerance", "AAPL")].count == 1
    (warning,) = [r for r in caplog.records if getattr(r, "transaction_id", None) == row.id]
    assert warning.levelname == "WARNING"
    assert (warning.status, warning.reason, warning.attempts) == (  # type: ignore[attr-defined]
        "rejected",
        "price_out_of_tolerance",
        0,
    )


def test_unknown_symbol_fails_with_404(client: FlaskClient, simulator: Simulator) -> None:
    response = post_buy(client, "10", 1, symbol="NOPE")
    assert response.status_code == 404
    assert _error(response)["code"] == "unknown_symbol"
    (row,) = ledger()
    assert (row.status, row.reason) == ("failed", "unknown_symbol")
    assert summaries()[("failed", "unknown_symbol", "NOPE")].count == 1


def test_vendor_rejection_is_passed_on_and_never_retried(
    client_with: Callable[..., FlaskClient], simulator: Simulator, waits: list[float]
) -> None:
    # Our tolerance is wider than the vendor's 2 %: the vendor refuses the order.
    client = client_with(price_tolerance=Decimal("0.05"))
    response = post_buy(client, simulator.price("AAPL") * Decimal("1.04"), 1)

    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "vendor_rejected"
    assert error["message"] == "Price must be within 2% of current price"
    (row,) = ledger()
    assert (row.status, row.reason, row.vendor_status, row.attempts) == (
        "failed",
        "vendor_rejected",
        400,
        1,
    )
    assert row.vendor_message == "Price must be within 2% of current price"
    assert vendor_buys(simulator) == 1
    assert waits == []


@pytest.mark.parametrize("quote_cached", [False, True], ids=["priced-by-vendor", "quote-cached"])
def test_vendor_5xx_is_retried_after_the_configured_waits_then_502(
    client_with: Callable[..., FlaskClient],
    simulator: Simulator,
    waits: list[float],
    monkeypatch: pytest.MonkeyPatch,
    quote_cached: bool,
) -> None:
    settings: dict[str, object] = {"cache_ttl_seconds": STEADY_REPRICE_SECONDS}
    client = client_with(
        vendor_retry_delays=(1.0, 2.0, 3.0),
        vendor_circuit_fail_max=50,
        **(settings if quote_cached else {}),
    )
    if quote_cached:
        with client.application.app_context():
            market_price("AAPL")  # a quote fresh enough to trade on
    counted: list[int] = []
    real_count_order = transactions.count_order

    def count_order(*args: object) -> bool:
        counted.append(1)
        return real_count_order(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(transactions, "count_order", count_order)
    simulator.configure(error_rate=1.0, fault_operations=("buy",))
    before = BUY_VENDOR_ATTEMPTS.labels("vendor_server_error")._value.get()
    response = post_buy(client, simulator.price("AAPL"), 1)

    assert response.status_code == 502
    assert _error(response)["code"] == "vendor_unavailable"
    assert waits == [1.0, 2.0, 3.0]
    (row,) = ledger()
    assert (row.status, row.reason, row.attempts, row.vendor_status) == (
        "failed",
        "vendor_unavailable",
        4,
        500,
    )
    assert vendor_buys(simulator) == 4
    assert simulator.orders() == []
    assert BUY_VENDOR_ATTEMPTS.labels("vendor_server_error")._value.get() == before + 4
    # Every order was counted before it left: the first by the claim itself
    # when the cached quote let it through, the others one by one.
    assert len(counted) == (3 if quote_cached else 4)


def test_a_retried_order_succeeds_once(
    client_with: Callable[..., FlaskClient], simulator: Simulator
) -> None:
    client = client_with(vendor_circuit_fail_max=50)
    simulator.configure(error_rate=0.5, fault_operations=("buy",))
    price = simulator.price("AAPL")
    responses = [post_buy(client, price, quantity) for quantity in range(1, 13)]

    rows = ledger()
    retried = [row for row in rows if row.status == "succeeded" and row.attempts > 1]
    assert retried, "no order succeeded after a 5xx (seeded faults)"
    succeeded = sorted(row.quantity for row in rows if row.status == "succeeded")
    assert sorted(order["quantity"] for order in simulator.orders()) == succeeded
    assert [r.status_code == 201 for r in responses] == [row.status == "succeeded" for row in rows]


def test_lost_answer_ends_unknown_and_is_not_resent(
    client: FlaskClient, simulator: Simulator, waits: list[float]
) -> None:
    simulator.configure(lost_rate=1.0, fault_operations=("buy",))
    response = post_buy(client, simulator.price("AAPL"), 2)

    assert response.status_code == 502
    error = _error(response)
    assert error["code"] == "order_outcome_unknown"
    (row,) = ledger()
    assert (row.status, row.reason, row.attempts) == ("unknown", "vendor_answer_lost", 1)
    assert error["details"]["transactionId"] == row.id
    assert len(simulator.orders()) == 1  # it was executed: the report will show it
    assert vendor_buys(simulator) == 1
    assert waits == []
    assert holdings() == {}
    assert summaries()[("unknown", "vendor_answer_lost", "AAPL")].quantity == 2


def test_read_timeout_ends_unknown_and_is_not_resent(
    client_with: Callable[..., FlaskClient], simulator: Simulator
) -> None:
    client = client_with(vendor_timeout_seconds=Decimal("0.2"))
    price = simulator.price("AAPL")
    post_buy(client, price, 1)  # caches the price, so only the order is slow
    simulator.configure(timeout_rate=1.0, slow_seconds=0.4, fault_operations=("buy",))
    response = post_buy(client, price, 1)

    assert response.status_code == 502
    assert _error(response)["code"] == "order_outcome_unknown"
    assert (ledger()[-1].status, ledger()[-1].reason) == ("unknown", "vendor_timeout")
    assert vendor_buys(simulator) == 2


def test_dropped_connection_ends_unknown(client: FlaskClient, simulator: Simulator) -> None:
    price = simulator.price("AAPL")
    simulator.configure(drop_rate=1.0, fault_operations=("buy",))
    response = post_buy(client, price, 1)

    assert response.status_code == 502
    (row,) = ledger()
    assert (row.status, row.reason) == ("unknown", "vendor_answer_lost")
    assert simulator.orders() == []  # unknown: executed or not, never resent
    assert vendor_buys(simulator) == 1


def test_circuit_opens_with_503_and_retry_after_then_closes(
    client_with: Callable[..., FlaskClient], simulator: Simulator, waits: list[float]
) -> None:
    # A reset long enough that a loaded machine's slow first buy does not
    # outlast it: the second buy must find the circuit still open.
    client = client_with(
        vendor_circuit_fail_max=2, vendor_circuit_reset_seconds=3, vendor_retry_delays=(1.0, 2.0)
    )
    price = simulator.price("AAPL")
    simulator.configure(error_rate=1.0, fault_operations=("buy",))

    tripping = post_buy(client, price, 1)  # two 5xx open the circuit; the third try is refused
    assert tripping.status_code == 503
    assert waits == [1.0, 2.0]
    sent = vendor_buys(simulator)
    waits.clear()
    refused = post_buy(client, price, 1)

    assert refused.status_code == 503
    assert _error(refused)["code"] == "circuit_open"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    assert vendor_buys(simulator) == sent  # refused without a call …
    assert waits == []  # … and without waiting
    assert [(row.status, row.reason) for row in ledger()] == [("failed", "circuit_open")] * 2
    assert [row.attempts for row in ledger()] == [2, 0]

    simulator.configure(error_rate=0.0)
    threading.Event().wait(3.1)  # the circuit's reset timeout
    assert post_buy(client, price, 1).status_code == 201
    assert post_buy(client, price, 1).status_code == 201


def test_a_replayed_circuit_open_failure_says_the_attempt_is_over(
    client_with: Callable[..., FlaskClient], simulator: Simulator, waits: list[float]
) -> None:
    client = client_with(vendor_circuit_fail_max=1, vendor_circuit_reset_seconds=60)
    price = simulator.price("AAPL")
    simulator.configure(error_rate=1.0, fault_operations=("buy",))
    post_buy(client, price, 1)  # a 5xx opens the circuit
    simulator.configure(error_rate=0.0)

    first = post_buy(client, price, 1, key="while-open")
    replayed = post_buy(client, price, 1, key="while-open")

    assert first.status_code == 503
    assert _error(first)["code"] == "circuit_open"
    assert "Retry-After" in first.headers  # this request may be retried after that
    assert replayed.status_code == 503
    assert _error(replayed)["code"] == "circuit_open"
    assert "Retry-After" not in replayed.headers  # that attempt will never succeed
    assert _error(replayed)["message"] == (
        "This attempt failed while the vendor's circuit was open; it is over. "
        "Send a new request to try again."
    )


def test_buys_work_without_redis(
    client_with: Callable[..., FlaskClient], simulator: Simulator
) -> None:
    client = client_with(redis_url=DEAD_REDIS)
    response = post_buy(client, simulator.price("AAPL"), 1)
    assert response.status_code == 201
    assert holdings()["AAPL"].quantity == 1


# --- idempotency --------------------------------------------------------------------


def test_same_key_and_body_replay_the_first_answer_without_a_second_order(
    client: FlaskClient, simulator: Simulator
) -> None:
    price = simulator.price("AAPL")
    first = post_buy(client, price, 2, key="order-1")
    again = post_buy(client, f"{price:f}0", 2, key="order-1")  # same amount, written differently

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json == first.json
    assert again.json is not None
    assert again.json["idempotencyKey"] == "order-1"
    assert len(simulator.orders()) == 1
    assert len(ledger()) == 1
    assert holdings()["AAPL"].quantity == 2


def test_a_failed_attempt_is_replayed_identically(
    client: FlaskClient, simulator: Simulator
) -> None:
    price = simulator.price("AAPL") * 2
    first = post_buy(client, price, 1, key="too-dear")
    again = post_buy(client, price, 1, key="too-dear")

    assert (first.status_code, again.status_code) == (422, 422)
    assert again.json == first.json
    assert len(ledger()) == 1


def test_same_key_with_another_body_is_422(client: FlaskClient, simulator: Simulator) -> None:
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1, key="k").status_code == 201
    response = post_buy(client, price, 2, key="k")

    assert response.status_code == 422
    error = _error(response)
    assert error["code"] == "idempotency_key_reused"
    (first,) = ledger()
    assert error["details"] == {"transactionId": first.id, "status": "succeeded", "reason": None}
    assert len(simulator.orders()) == 1


def test_keys_are_scoped_to_the_user(client: FlaskClient, simulator: Simulator) -> None:
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1, key="k", user_id="alice").status_code == 201
    assert post_buy(client, price, 1, key="k", user_id="bob").status_code == 201
    assert len(simulator.orders()) == 2


@pytest.fixture
def busy_app(client_with: Callable[..., FlaskClient]) -> Flask:
    """An app for many simultaneous buys: the AAPL quote is cached for the whole
    (steady) price cycle, so only orders reach the vendor, and the vendor timeout
    leaves room for a busy machine (the simulator accepts connections slowly)."""
    app: Flask = client_with(
        cache_ttl_seconds=STEADY_REPRICE_SECONDS, vendor_timeout_seconds=10
    ).application
    market_price("AAPL")
    return app


def test_twenty_concurrent_requests_with_one_key_place_one_order(
    busy_app: Flask, simulator: Simulator
) -> None:
    price = simulator.price("AAPL")
    simulator.configure(latency=0.3)  # the first request is still running when the others come
    start = threading.Barrier(20)

    def send(_: int) -> TestResponse:
        client = busy_app.test_client()
        start.wait()
        return post_buy(client, price, 5, key="once")

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(send, range(20)))

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {201, 409}, [r.json for r in responses]
    assert statuses[201] >= 1
    assert len({str(r.json) for r in responses if r.status_code == 201}) == 1
    conflict = next(r for r in responses if r.status_code == 409)
    assert _error(conflict)["code"] == "idempotency_key_in_use"
    assert [order["quantity"] for order in simulator.orders()] == [5]
    assert holdings()["AAPL"].quantity == 5
    replay = post_buy(busy_app.test_client(), price, 5, key="once")
    assert replay.status_code == 201


# --- concurrency and chaos ------------------------------------------------------------


def test_fifty_concurrent_buys_lose_no_update(
    busy_app: Flask, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    price = simulator.price("AAPL")
    start = threading.Barrier(50)

    def send(quantity: int) -> TestResponse:
        client = busy_app.test_client()
        start.wait()
        return post_buy(client, price, quantity)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(send, range(1, 51)))

    failed = [(r.status_code, r.json) for r in responses if r.status_code != 201]
    assert failed == []
    holding = holdings()["AAPL"]
    assert holding.quantity == sum(range(1, 51))
    assert holding.cost_basis == price * sum(range(1, 51))
    assert holding.version == 50
    summary = summaries()[("succeeded", "", "AAPL")]
    assert (summary.count, summary.quantity) == (50, sum(range(1, 51)))
    # Each outcome was written at the first try: no two buys deadlocked.
    assert "ledger unreachable, outcome kept" not in caplog.messages


@pytest.fixture
def flaky_vendor(client_with: Callable[..., FlaskClient], simulator: Simulator) -> FlaskClient:
    simulator.configure(error_rate=0.3, lost_rate=0.1, fault_operations=("buy",))
    return client_with(vendor_circuit_fail_max=10_000, cache_ttl_seconds=STEADY_REPRICE_SECONDS)


def test_under_vendor_faults_every_attempt_is_final_and_nothing_is_bought_twice(
    flaky_vendor: FlaskClient, simulator: Simulator
) -> None:
    price = simulator.price("AAPL")
    unknown_before = BUYS.labels("unknown", "vendor_answer_lost")._value.get()

    def send(quantity: int) -> int:  # the quantity identifies the attempt
        return post_buy(flaky_vendor, price, quantity).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(send, range(1, 301)))

    rows = ledger()
    assert len(rows) == 300
    by_status = Counter(row.status for row in rows)
    assert set(by_status) <= {"succeeded", "failed", "unknown"}
    assert by_status["unknown"] > 0
    assert by_status["succeeded"] > 0
    executed = [order["quantity"] for order in simulator.orders()]
    assert len(executed) == len(set(executed))  # no attempt was executed twice
    succeeded = {row.quantity for row in rows if row.status == "succeeded"}
    unknown = {row.quantity for row in rows if row.status == "unknown"}
    assert succeeded <= set(executed) <= succeeded | unknown
    assert Counter(statuses) == Counter(201 if row.status == "succeeded" else 502 for row in rows)
    assert {row.reason for row in rows if row.status == "failed"} <= {"vendor_unavailable"}
    assert {row.reason for row in rows if row.status == "unknown"} == {"vendor_answer_lost"}
    assert holdings()["AAPL"].quantity == sum(succeeded)
    counted: Counter[str] = Counter()
    for (status, _reason, _symbol), summary in summaries().items():
        counted[status] += summary.count
    assert counted == by_status
    assert BUYS.labels("unknown", "vendor_answer_lost")._value.get() - unknown_before == len(
        unknown
    )


# --- the ledger database failing ---------------------------------------------


def test_buy_without_the_database_is_a_503_and_sends_no_order(
    make_settings: Callable[..., Settings], simulator: Simulator
) -> None:
    client = create_app(make_settings(database_url=DEAD_POSTGRES)).test_client()

    response = post_buy(client, simulator.price("AAPL"), 1, key="db-down")

    assert response.status_code == 503
    assert _error(response)["code"] == "database_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert simulator.orders() == []


def _ledger_lost(*_args: object) -> None:
    raise OperationalError("UPDATE transactions …", None, Exception("connection lost"))


@pytest.fixture
def brief_patience(monkeypatch: pytest.MonkeyPatch) -> None:
    """A buy waits a fraction of a second, not 9 s, for its ledger to come back."""
    monkeypatch.setattr(outcomes, "RECORD_PATIENCE_SECONDS", 0.3)
    monkeypatch.setattr(outcomes, "_RECORD_WAIT_SECONDS", 0.1)


def test_a_confirmed_order_whose_outcome_cannot_be_written_is_applied_on_retry(
    client: FlaskClient,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    brief_patience: None,
) -> None:
    price = simulator.price("AAPL")

    with monkeypatch.context() as patched:
        patched.setattr(outcomes, "record", _ledger_lost)
        first = post_buy(client, price, 2, key="write-lost")
        [row] = ledger()
        assert (row.status, row.attempts, row.market_price) == ("pending", 1, price)
        assert post_buy(client, price, 2, key="write-lost").status_code == 503  # still away
    assert first.status_code == 503
    assert _error(first)["code"] == "outcome_not_recorded"
    assert len(simulator.orders()) == 1  # the vendor did execute it

    again = post_buy(client, price, 2, key="write-lost")  # the ledger is back

    assert again.status_code == 201
    assert again.json is not None
    assert again.json["status"] == "succeeded"
    [row] = ledger()
    assert (row.status, row.attempts) == ("succeeded", 1)
    assert holdings()["AAPL"].quantity == 2
    assert post_buy(client, price, 2, key="write-lost").status_code == 201
    assert len(simulator.orders()) == 1  # retries never sent a second order
    assert holdings()["AAPL"].quantity == 2  # credited once
    assert summaries()[("succeeded", "", "AAPL")].count == 1


def test_an_unrecorded_outcome_invites_a_retry_only_with_an_idempotency_key(
    client: FlaskClient,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    brief_patience: None,
) -> None:
    """Without a key a retry is a new order: the 503 must not invite one."""
    price = simulator.price("AAPL")
    with monkeypatch.context() as patched:
        patched.setattr(outcomes, "record", _ledger_lost)
        keyed = post_buy(client, price, 1, key="lost-with-key")
        keyless = post_buy(client, price, 1)

    assert (keyed.status_code, keyless.status_code) == (503, 503)
    assert keyed.headers.get("Retry-After") is not None
    assert "Retry-After" not in keyless.headers
    assert _error(keyless)["code"] == "outcome_not_recorded"
    assert "do not resend" in _error(keyless)["message"]
    assert _error(keyless)["details"]["transactionId"] == max(row.id for row in ledger())


def test_the_sweep_applies_a_kept_outcome_before_giving_up_on_pending_rows(
    client: FlaskClient,
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    brief_patience: None,
) -> None:
    price = simulator.price("AAPL")
    with monkeypatch.context() as patched:
        patched.setattr(outcomes, "record", _ledger_lost)
        assert post_buy(client, price, 2).status_code == 503
    db.session.execute(
        update(Transaction).values(created_at=utcnow() - ABANDONED_AFTER - timedelta(seconds=1))
    )
    db.session.commit()

    assert sweep.sweep() == 1
    assert sweep.sweep() == 0

    assert [(row.status, row.attempts) for row in ledger()] == [("succeeded", 1)]
    assert holdings()["AAPL"].quantity == 2
    assert summaries()[("succeeded", "", "AAPL")].count == 1


def test_without_redis_the_worker_records_the_outcome_once_the_ledger_is_back(
    client_with: Callable[..., FlaskClient],
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    brief_patience: None,
) -> None:
    client = client_with(redis_url=DEAD_REDIS)  # nowhere to keep the outcome
    monkeypatch.setattr(outcomes, "_BACKGROUND_WAIT_SECONDS", 0.1)
    ledger_down = threading.Event()
    ledger_down.set()
    real_record = outcomes.record

    def record(transaction_id: int, outcome: Outcome) -> Transaction:
        if ledger_down.is_set():
            _ledger_lost()
        return real_record(transaction_id, outcome)

    monkeypatch.setattr(outcomes, "record", record)
    first = post_buy(client, simulator.price("AAPL"), 2)
    assert first.status_code == 503
    assert [row.status for row in ledger()] == ["pending"]

    ledger_down.clear()  # PostgreSQL is back
    deadline = time.monotonic() + 10
    while ledger()[0].status == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)

    assert [row.status for row in ledger()] == ["succeeded"]
    assert holdings()["AAPL"].quantity == 2


def test_the_buy_itself_records_its_outcome_when_the_ledger_is_back_in_time(
    client: FlaskClient, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_record = outcomes.record
    calls: list[int] = []

    def flaky_record(transaction_id: int, outcome: Outcome) -> Transaction:
        calls.append(transaction_id)
        if len(calls) <= 3:
            _ledger_lost()
        return real_record(transaction_id, outcome)

    monkeypatch.setattr(outcomes, "record", flaky_record)
    response = post_buy(client, simulator.price("AAPL"), 3)

    assert response.status_code == 201
    assert len(calls) == 4
    assert [row.status for row in ledger()] == ["succeeded"]
    assert holdings()["AAPL"].quantity == 3
    assert outcomes.apply_all_kept().applied == 0  # the kept copy was discarded


def test_an_order_the_ledger_cannot_count_is_not_sent(
    client: FlaskClient, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    price = simulator.price("AAPL")
    with monkeypatch.context() as patched:
        patched.setattr(transactions, "count_order", _ledger_lost)
        first = post_buy(client, price, 1, key="not-counted")
    replayed = post_buy(client, price, 1, key="not-counted")

    assert simulator.orders() == []
    for response in (first, replayed):
        assert response.status_code == 503
        assert _error(response)["code"] == "order_not_sent"
        assert "Retry-After" not in response.headers
    assert [(row.status, row.reason, row.attempts) for row in ledger()] == [
        ("failed", "ledger_unavailable", 0)
    ]


@pytest.mark.parametrize("quote_cached", [False, True], ids=["priced-by-vendor", "quote-cached"])
def test_no_order_is_sent_once_the_buy_is_past_its_deadline(
    client_with: Callable[..., FlaskClient],
    simulator: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    quote_cached: bool,
) -> None:
    # A buy slower than its deadline could meet the sweep of abandoned attempts:
    # it must give up before sending, so the sweep never races a live order;
    # also when its claim counted the order (a cached quote let it through).
    client = client_with(**({"cache_ttl_seconds": STEADY_REPRICE_SECONDS} if quote_cached else {}))
    if quote_cached:
        with client.application.app_context():
            market_price("AAPL")
    monkeypatch.setattr("service.services.orders.ORDER_DEADLINE_SECONDS", -1.0)

    response = post_buy(client, simulator.price("AAPL"), 1)

    assert response.status_code == 502
    assert _error(response)["details"]["reason"] == "deadline_passed"
    assert simulator.orders() == []
    assert [(row.status, row.reason, row.attempts) for row in ledger()] == [
        ("failed", "deadline_passed", 0)
    ]


def test_an_order_the_vendor_executed_differently_is_unknown_and_credits_nothing(
    client: FlaskClient, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    price = simulator.price("AAPL")

    def partial_fill(self: object, symbol: str, price: Decimal, quantity: int) -> VendorOrder:
        return VendorOrder(symbol=symbol, quantity=quantity - 1, price=price, total=price)

    monkeypatch.setattr("service.vendorapi.client.VendorClient.place_order", partial_fill)
    response = post_buy(client, price, 2)

    assert response.status_code == 502
    assert _error(response)["details"]["reason"] == "vendor_order_mismatch"
    assert [(row.status, row.vendor_message) for row in ledger()] == [
        ("unknown", f"vendor executed 1 AAPL at {price}")
    ]
    assert holdings() == {}
