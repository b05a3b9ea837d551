"""Contract tests of the vendor simulator, spoken to over real HTTP (DESIGN.md section 3).

The served simulator runs on a fixed clock, so prices only move when a test
calls ``advance``; every test starts from ``reset()``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from service.vendorapi.simulator import (
    SECTORS,
    SIMULATOR_API_KEY,
    Simulator,
    SimulatorConfig,
    SimulatorServer,
    serve,
)
from tests.buys_support import at_price

T0 = 1_800_000_000.0
REPO = Path(__file__).resolve().parents[3]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ITEM_FIELDS = {"symbol", "name", "price", "sector", "change", "lastUpdated"}
TIMEOUT = 5.0
CENTS = -2  # the exponent of a Decimal with exactly two decimals


def fixed_clock() -> float:
    return T0


def decoded(response: requests.Response) -> Any:
    """The JSON body with every fractional number as an exact Decimal."""
    assert response.headers["Content-Type"] == "application/json"
    return json.loads(response.text, parse_float=Decimal)


def moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


@dataclass
class Api:
    """A keyed HTTP client of one served simulator."""

    url: str
    session: requests.Session

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url + path, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.url + path, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)

    def page(self, token: str | None = None, **kwargs: Any) -> requests.Response:
        params = None if token is None else {"nextToken": token}
        return self.get("/stocks", params=params, **kwargs)

    def walk(self) -> list[dict[str, Any]]:
        """Every page's ``data``, following ``nextToken`` until it is absent."""
        pages = [decoded(self.page())["data"]]
        while "nextToken" in pages[-1]:
            response = self.page(pages[-1]["nextToken"])
            assert response.status_code == 200
            pages.append(decoded(response)["data"])
        return pages

    def items(self) -> dict[str, dict[str, Any]]:
        return {item["symbol"]: item for page in self.walk() for item in page["items"]}

    def buy(
        self, symbol: str, price: Decimal, quantity: int = 1, **kwargs: Any
    ) -> requests.Response:
        body = f'{{"price": {price:f}, "quantity": {quantity}}}'
        headers = {"Content-Type": "application/json"}
        return self.post(f"/stocks/{symbol}/buy", data=body, headers=headers, **kwargs)


@pytest.fixture(scope="module")
def vendor() -> Iterator[SimulatorServer]:
    server = serve(Simulator(SimulatorConfig(), clock=fixed_clock))
    yield server
    server.shutdown()


@pytest.fixture
def sim(vendor: SimulatorServer) -> Iterator[Simulator]:
    vendor.simulator.reset()
    yield vendor.simulator
    vendor.simulator.reset()


@pytest.fixture
def api(vendor: SimulatorServer, sim: Simulator) -> Iterator[Api]:
    with requests.Session() as session:
        session.headers["x-api-key"] = SIMULATOR_API_KEY
        yield Api(vendor.url, session)


def served_catalogue(config: SimulatorConfig) -> dict[str, dict[str, Any]]:
    with serve(Simulator(config, clock=fixed_clock)) as server, requests.Session() as session:
        session.headers["x-api-key"] = SIMULATOR_API_KEY
        return Api(server.url, session).items()


# --- auth and routing ---------------------------------------------------------------

ROUTES = [
    ("GET", "/stocks"),
    ("POST", "/stocks/AAPL/buy"),
    ("GET", "/_sim/orders"),
    ("POST", "/_sim/reset"),
    ("GET", "/nowhere"),
]


@pytest.mark.parametrize("headers", [{}, {"x-api-key": "wrong-key"}], ids=["missing", "wrong"])
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_the_key(
    vendor: SimulatorServer, sim: Simulator, headers: dict[str, str], method: str, path: str
) -> None:
    body = '{"price": 220.67, "quantity": 1}'
    response = requests.request(
        method, vendor.url + path, headers=headers, data=body, timeout=TIMEOUT
    )
    assert response.status_code == 403
    assert decoded(response) == {"message": "Forbidden"}
    assert sim.orders() == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/stocks/"),
        ("GET", "/stocks/AAPL"),
        ("GET", "/stocks/AAPL/buy"),
        ("POST", "/stocks"),
        ("DELETE", "/stocks"),
    ],
)
def test_unknown_route_is_not_found(api: Api, method: str, path: str) -> None:
    response = api.session.request(method, api.url + path, timeout=TIMEOUT)
    assert response.status_code == 404
    assert decoded(response) == {"message": "Not Found"}


# --- catalogue and paging -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stocks", "page_size", "sizes"),
    [(120, 25, [25, 25, 25, 25, 20]), (50, 10, [10] * 5), (3, 5, [3])],
)
def test_following_next_token_reaches_every_stock_once(
    api: Api, sim: Simulator, stocks: int, page_size: int, sizes: list[int]
) -> None:
    sim.configure(stocks=stocks, page_size=page_size)
    pages = api.walk()
    symbols = [item["symbol"] for page in pages for item in page["items"]]
    assert symbols == sim.symbols()
    assert len(set(symbols)) == len(symbols) == stocks
    assert [len(page["items"]) for page in pages] == sizes
    assert len(pages) == sim.page_count()
    assert all("nextToken" in page for page in pages[:-1])
    assert "nextToken" not in pages[-1]


def test_page_order_is_fixed_and_not_alphabetical(api: Api, sim: Simulator) -> None:
    first = [item["symbol"] for page in api.walk() for item in page["items"]]
    assert first == [item["symbol"] for page in api.walk() for item in page["items"]]
    assert first != sorted(first)
    for stocks in (2, 3, 5, 10):
        symbols = Simulator(SimulatorConfig(stocks=stocks)).symbols()
        assert symbols != sorted(symbols)


def test_a_token_is_padded_base64_json_of_the_previous_last_symbol(
    api: Api, sim: Simulator
) -> None:
    sim.configure(page_size=10)
    pages = api.walk()
    tokens = [page["nextToken"] for page in pages[:-1]]
    for page, token in zip(pages[:-1], tokens, strict=True):
        expected = json.dumps({"symbol": page["items"][-1]["symbol"]}, separators=(",", ":"))
        assert base64.b64decode(token, validate=True) == expected.encode()
    assert any(token.endswith("=") for token in tokens)  # so clients must URL-encode it


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64!",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b'["AAPL"]').decode(),
        base64.b64encode(b'{"symbol":"NOSUCH"}').decode(),
        base64.b64encode(b'{"symbol":"AAPL"}').decode().rstrip("="),
    ],
    ids=["empty", "not-base64", "not-json", "not-object", "unknown-symbol", "unpadded"],
)
def test_an_invalid_token_is_rejected(api: Api, token: str) -> None:
    response = api.page(token)
    assert response.status_code == 400
    assert decoded(response) == {"message": "Invalid nextToken"}


def test_items_carry_six_typed_fields(api: Api, sim: Simulator) -> None:
    now = datetime.fromtimestamp(T0, UTC)
    raw = api.page().json()["data"]["items"]
    assert all(isinstance(item["price"], float | int) for item in raw)  # numbers, not strings
    assert all(isinstance(item["change"], float | int) for item in raw)
    for item in api.items().values():
        assert set(item) == ITEM_FIELDS
        assert isinstance(item["symbol"], str)
        assert re.fullmatch(r"[A-Z]{1,5}|[A-Z]{3}\.[A-Z]", item["symbol"])
        assert isinstance(item["name"], str)
        assert item["name"]
        assert item["sector"] in SECTORS
        assert isinstance(item["price"], Decimal)
        assert isinstance(item["change"], Decimal)
        assert TIMESTAMP.fullmatch(item["lastUpdated"])
        assert now - timedelta(seconds=300) < moment(item["lastUpdated"]) <= now


def test_prices_are_exact_two_decimal_numbers(api: Api, sim: Simulator) -> None:
    for symbol, item in api.items().items():
        assert item["price"].as_tuple().exponent == CENTS
        assert item["change"].as_tuple().exponent == CENTS
        assert item["price"] == sim.price(symbol)
        assert item["price"] >= Decimal("0.01")


def test_the_catalogue_has_apple_and_a_penny_stock(api: Api, sim: Simulator) -> None:
    items = api.items()
    assert items["AAPL"]["name"] == "Apple Inc."
    assert items["AAPL"]["sector"] == "Technology"
    assert Decimal("0.24") <= items["PNNY"]["price"] <= Decimal("0.26")
    for _ in range(100):
        sim.advance(300)
        assert Decimal("0.24") <= sim.price("PNNY") <= Decimal("0.26")
    assert any("." in symbol for symbol in items)


@pytest.mark.parametrize(("stocks", "has_penny"), [(1, False), (9, False), (10, True), (120, True)])
def test_small_catalogues(stocks: int, has_penny: bool) -> None:
    symbols = Simulator(SimulatorConfig(stocks=stocks)).symbols()
    assert len(symbols) == stocks
    assert "AAPL" in symbols
    assert ("PNNY" in symbols) is has_penny


# --- repricing and determinism ------------------------------------------------------


def test_a_full_cycle_reprices_every_stock(api: Api, sim: Simulator) -> None:
    before = api.items()
    sim.advance(sim.config.reprice_seconds)
    after = api.items()
    for symbol, item in after.items():
        moved = moment(item["lastUpdated"]) - moment(before[symbol]["lastUpdated"])
        assert moved == timedelta(seconds=300)
        assert item["change"] == item["price"] - before[symbol]["price"]


def test_stocks_reprice_one_by_one(api: Api, sim: Simulator) -> None:
    before = api.items()
    sim.advance(150)
    after = api.items()
    repriced = {s for s in after if after[s]["lastUpdated"] != before[s]["lastUpdated"]}
    assert 0 < len(repriced) < len(after)
    assert all(after[s]["price"] == before[s]["price"] for s in set(after) - repriced)


def test_the_same_seed_serves_the_same_catalogue(api: Api) -> None:
    first = served_catalogue(SimulatorConfig(seed=42))
    assert served_catalogue(SimulatorConfig(seed=42)) == first == api.items()
    assert list(first) == list(api.items())
    other = served_catalogue(SimulatorConfig(seed=43))
    assert list(other) != list(first)
    assert {s: i["price"] for s, i in other.items()} != {s: i["price"] for s, i in first.items()}


# --- buying -------------------------------------------------------------------------


def test_a_buy_is_executed_and_recorded(api: Api, sim: Simulator) -> None:
    price = sim.price("AAPL")
    response = api.buy("AAPL", price, quantity=3)
    assert response.status_code == 200
    assert decoded(response) == {
        "status": 200,
        "message": "Order placed successfully",
        "data": {"order": {"symbol": "AAPL", "quantity": 3, "price": price, "total": price * 3}},
    }
    (order,) = sim.orders()
    assert order["symbol"] == "AAPL"
    assert (order["quantity"], order["price"], order["total"]) == (3, price, price * 3)
    assert isinstance(order["id"], str)
    assert order["executedAt"] == "2027-01-15T08:00:00.000Z"
    assert moment(order["executedAt"]).timestamp() == T0


def test_a_dotted_symbol_can_be_bought(api: Api, sim: Simulator) -> None:
    symbol = next(symbol for symbol in sim.symbols() if "." in symbol)
    assert api.buy(symbol, sim.price(symbol)).status_code == 200
    assert [order["symbol"] for order in sim.orders()] == [symbol]


@pytest.mark.parametrize("symbol", ["AAPL", "PNNY"])
@pytest.mark.parametrize(
    ("factor", "nudge", "accepted"),
    [
        ("1.02", "0", True),
        ("0.98", "0", True),
        ("1.02", "0.000001", False),
        ("0.98", "-0.000001", False),
    ],
    ids=["upper-edge", "lower-edge", "above-band", "below-band"],
)
def test_the_two_percent_band_is_inclusive(
    api: Api, sim: Simulator, symbol: str, factor: str, nudge: str, accepted: bool
) -> None:
    price = sim.price(symbol) * Decimal(factor) + Decimal(nudge)
    response = api.buy(symbol, price)
    if accepted:
        assert response.status_code == 200
        assert decoded(response)["data"]["order"]["price"] == price
        assert [order["price"] for order in sim.orders()] == [price]
    else:
        assert response.status_code == 400
        assert decoded(response) == {"message": "Price must be within 2% of current price"}
        assert sim.orders() == []


@pytest.mark.parametrize(
    ("price", "exact", "in_floats"),
    [("0.245", True, False), ("0.255", True, False), ("0.2451", True, True), ("0.25", True, True)],
)
def test_the_float_band_knob_refuses_what_a_javascript_vendor_would(
    api: Api, sim: Simulator, price: str, exact: bool, in_floats: bool
) -> None:
    at_price(sim, "PNNY", Decimal("0.25"))
    assert (api.buy("PNNY", Decimal(price)).status_code == 200) is exact
    sim.configure(float_band=True)
    response = api.buy("PNNY", Decimal(price))
    assert (response.status_code == 200) is in_floats
    if not in_floats:
        assert decoded(response) == {"message": "Price must be within 2% of current price"}


def test_an_unknown_symbol_is_not_found(api: Api, sim: Simulator) -> None:
    response = api.buy("NOSUCH", Decimal("10.00"))
    assert response.status_code == 404
    assert decoded(response) == {"message": "Stock not found"}


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        '{"quantity": 1}',
        '{"price": "225.38", "quantity": 1}',
        '{"price": 0, "quantity": 1}',
        '{"price": -225.38, "quantity": 1}',
        '{"price": NaN, "quantity": 1}',
        '{"price": true, "quantity": 1}',
        '{"price": 225.38}',
        '{"price": 225.38, "quantity": 0}',
        '{"price": 225.38, "quantity": -1}',
        '{"price": 225.38, "quantity": 1.5}',
        '{"price": 225.38, "quantity": "1"}',
        '{"price": 225.38, "quantity": true}',
    ],
)
def test_a_bad_buy_body_is_rejected(api: Api, sim: Simulator, body: str) -> None:
    response = api.post("/stocks/AAPL/buy", data=body)
    assert response.status_code == 400
    message = decoded(response)["message"]
    assert isinstance(message, str)
    assert message
    assert sim.orders() == []


def test_concurrent_buys_are_all_recorded(api: Api, sim: Simulator) -> None:
    price = sim.price("AAPL")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: buy_once(api.url, price), range(40)))
    assert statuses == [200] * 40
    assert len(sim.orders()) == 40
    assert len({order["id"] for order in sim.orders()}) == 40
    assert sim.stats()["requests"]["buy"] == 40


def buy_once(url: str, price: Decimal) -> int:
    with requests.Session() as session:
        session.headers["x-api-key"] = SIMULATOR_API_KEY
        return Api(url, session).buy("AAPL", price).status_code


# --- faults -------------------------------------------------------------------------


def test_error_rate_answers_500_and_executes_nothing(api: Api, sim: Simulator) -> None:
    sim.configure(error_rate=1)
    for response in (api.page(), api.buy("AAPL", sim.price("AAPL"))):
        assert response.status_code == 500
        assert decoded(response) == {"message": "Internal server error"}
    assert sim.orders() == []
    assert sim.stats()["faults"]["error"] == 2


def test_drop_rate_closes_the_connection_and_executes_nothing(api: Api, sim: Simulator) -> None:
    sim.configure(drop_rate=1)
    with pytest.raises(requests.ConnectionError):
        api.buy("AAPL", sim.price("AAPL"))
    with pytest.raises(requests.ConnectionError):
        api.page()
    assert sim.orders() == []
    assert sim.stats()["faults"]["drop"] == 2


def test_lost_rate_executes_the_buy_but_never_answers(api: Api, sim: Simulator) -> None:
    sim.configure(lost_rate=1)
    with pytest.raises(requests.ConnectionError):
        api.buy("AAPL", sim.price("AAPL"))
    assert [order["symbol"] for order in sim.orders()] == ["AAPL"]
    assert api.page().status_code == 200  # listing is never "lost"
    assert api.buy("AAPL", Decimal("1.00")).status_code == 400  # rejected buys are answered
    assert sim.stats()["faults"]["lost"] == 1


def test_timeout_rate_answers_slowly_but_executes_the_buy(api: Api, sim: Simulator) -> None:
    sim.configure(timeout_rate=1, slow_seconds=0.4)
    with pytest.raises(requests.ReadTimeout):
        api.buy("AAPL", sim.price("AAPL"), timeout=(TIMEOUT, 0.1))
    assert [order["symbol"] for order in sim.orders()] == ["AAPL"]
    started = time.monotonic()
    assert api.page().status_code == 200
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize(("faulty", "healthy"), [("buy", "list"), ("list", "buy")])
def test_fault_operations_limits_the_faults(
    api: Api, sim: Simulator, faulty: str, healthy: str
) -> None:
    sim.configure(error_rate=1, fault_operations=(faulty,))
    statuses = {
        "list": api.page().status_code,
        "buy": api.buy("AAPL", sim.price("AAPL")).status_code,
    }
    assert statuses == {faulty: 500, healthy: 200}


def test_latency_delays_every_answer(api: Api, sim: Simulator) -> None:
    sim.configure(latency=0.2, jitter=0.05)
    price = sim.price("AAPL")
    calls: list[Callable[[], requests.Response]] = [
        api.page,
        lambda: api.buy("AAPL", price),
        lambda: api.page("bad"),
    ]
    for call in calls:
        started = time.monotonic()
        call()
        assert time.monotonic() - started >= 0.2


# --- admin routes -------------------------------------------------------------------


def test_admin_routes_are_never_delayed_or_faulty(api: Api, sim: Simulator) -> None:
    sim.configure(latency=2, error_rate=1, drop_rate=1, timeout_rate=1, slow_seconds=5)
    started = time.monotonic()
    for method, path in [
        ("GET", "/_sim/orders"),
        ("GET", "/_sim/stats"),
        ("GET", "/_sim/config"),
        ("POST", "/_sim/advance"),
        ("POST", "/_sim/reset"),
    ]:
        response = api.session.request(method, api.url + path, json={"seconds": 1}, timeout=1)
        assert response.status_code == 200, path
    assert time.monotonic() - started < 1
    assert sim.config == SimulatorConfig()


def test_admin_config_changes_knobs(api: Api, sim: Simulator) -> None:
    knobs = {"page_size": 10, "error_rate": 0.5, "fault_operations": ["buy"], "latency": 0}
    response = api.post("/_sim/config", json=knobs)
    assert response.status_code == 200
    assert decoded(response) == {**decoded(api.get("/_sim/config")), **knobs}
    assert sim.page_count() == 12
    assert sim.config.fault_operations == ("buy",)
    for body in ['{"nope": 1}', '{"error_rate": 2}', '{"stocks": 0}', "[]", "not json"]:
        rejected = api.post("/_sim/config", data=body)
        assert rejected.status_code == 400, body
        assert decoded(rejected)["message"]
    assert sim.config.page_size == 10


def test_admin_orders_stats_advance_and_reset(api: Api, sim: Simulator) -> None:
    api.page()
    api.page("bad")
    api.buy("AAPL", sim.price("AAPL"), quantity=2)
    assert decoded(api.get("/_sim/stats")) == {
        "requests": {"list": 2, "buy": 1},
        "faults": {"drop": 0, "error": 0, "lost": 0, "slow": 0},
    }
    assert decoded(api.get("/_sim/orders")) == {"orders": sim.orders()}

    advanced = api.post("/_sim/advance", json={"seconds": 300})
    assert decoded(advanced) == {"now": "2027-01-15T08:05:00.000Z"}
    assert sim.now() == T0 + 300
    for body in [{"seconds": -1}, {}, {"seconds": "300"}]:
        assert api.post("/_sim/advance", json=body).status_code == 400

    sim.configure(seed=7)
    assert api.post("/_sim/reset").status_code == 200
    assert (sim.now(), sim.orders(), sim.config) == (T0, [], SimulatorConfig())
    assert sim.stats()["requests"] == {"list": 0, "buy": 0}


@pytest.mark.parametrize(
    "knobs",
    [
        {"stocks": 0},
        {"page_size": 0},
        {"reprice_seconds": 0},
        {"stocks": True},
        {"seed": 1.5},
        {"error_rate": -0.1},
        {"drop_rate": 1.5},
        {"lost_rate": "0.5"},
        {"latency": -1},
        {"slow_seconds": float("inf")},
        {"jitter": float("nan")},
        {"fault_operations": ("sell",)},
        {"fault_operations": "buy"},
        {"api_key": ""},
        {"colour": "blue"},
    ],
)
def test_invalid_knobs_are_refused(sim: Simulator, knobs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(knobs))):
        sim.configure(**knobs)
    assert sim.config == SimulatorConfig()
    if "colour" not in knobs:
        with pytest.raises(ValueError, match=next(iter(knobs))):
            SimulatorConfig(**knobs)


def test_shutdown_closes_kept_alive_connections() -> None:
    server = serve(Simulator(SimulatorConfig(stocks=10)))
    with requests.Session() as session:
        session.headers["x-api-key"] = SIMULATOR_API_KEY
        api = Api(server.url, session)
        assert api.page().status_code == 200
        server.shutdown()
        with pytest.raises(requests.ConnectionError):
            api.page()


# --- command line -------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_command_line_serves_until_stopped(stop: signal.Signals) -> None:
    command = [sys.executable, "-m", "service.vendorapi.simulator", "--port", "0"]
    command += ["--stocks", "30", "--page-size", "10", "--seed", "7", "--float-band"]
    env = {**os.environ, "VENDOR_API_KEY": "cli-key"}
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        try:
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "the simulator printed nothing"
            line = process.stdout.readline()
            shape = r"\(30 stocks, 10 per page, seed 7\)"
            shown = re.fullmatch(rf"vendor simulator on (http://127\.0\.0\.1:\d+) {shape}\n", line)
            assert shown, line
            url = shown.group(1) + "/stocks"
            answer = requests.get(url, headers={"x-api-key": "cli-key"}, timeout=TIMEOUT)
            assert answer.status_code == 200
            assert len(decoded(answer)["data"]["items"]) == 10
            config = requests.get(
                shown.group(1) + "/_sim/config", headers={"x-api-key": "cli-key"}, timeout=TIMEOUT
            )
            assert decoded(config)["float_band"] is True
            default_key = {"x-api-key": SIMULATOR_API_KEY}
            assert requests.get(url, headers=default_key, timeout=TIMEOUT).status_code == 403
        finally:
            process.send_signal(stop)
            _, errors = process.communicate(timeout=10)
    assert process.returncode == 0
    assert errors == ""


def test_ctrl_c_then_term_always_stops_the_command_line() -> None:
    """``make run`` stops its servers as a terminal does: SIGINT to the group,
    then its own SIGTERM. Signals in a row must stop the simulator every time
    (a handler setting an Event could deadlock on the Event's own lock)."""
    command = [sys.executable, "-m", "service.vendorapi.simulator", "--port", "0"]
    for _ in range(10):
        with subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as process:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 10)
            assert ready, "the simulator printed nothing"
            process.stdout.readline()
            process.send_signal(signal.SIGINT)
            for _ in range(200):  # more stop signals while it stops
                if process.poll() is not None:
                    break
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                pytest.fail("the simulator did not stop on SIGINT then SIGTERM")
        assert process.returncode == 0
