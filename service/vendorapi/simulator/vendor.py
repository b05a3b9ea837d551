"""The simulated vendor: its state and how it answers each request.

:class:`Simulator` knows nothing of sockets: ``http`` turns a connection's
request into a :class:`Request` and writes back the :class:`Reply`.
"""

from __future__ import annotations

import dataclasses
import hmac
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from typing import Any, NamedTuple, TypedDict
from urllib.parse import parse_qs, unquote

from service.vendorapi.simulator import market
from service.vendorapi.simulator.catalogue import (
    Stock,
    build_catalogue,
    decode_token,
    encode_token,
)
from service.vendorapi.simulator.config import KNOBS, SimulatorConfig, as_float
from service.vendorapi.simulator.faults import Faults
from service.vendorapi.wire import loads

_BUY_PATH = re.compile(r"/stocks/([^/]+)/buy")
_ADMIN_ROUTES = {
    ("GET", "/_sim/orders"): "orders",
    ("GET", "/_sim/stats"): "stats",
    ("GET", "/_sim/config"): "config",
    ("POST", "/_sim/config"): "configure",
    ("POST", "/_sim/advance"): "advance",
    ("POST", "/_sim/reset"): "reset",
}


class Order(TypedDict):
    """An order the simulator executed (``price`` and ``total`` have >= 2 decimals)."""

    id: str
    symbol: str
    quantity: int
    price: Decimal
    total: Decimal
    executedAt: str


class Request(NamedTuple):
    """One HTTP request as the simulator sees it."""

    method: str
    path: str
    query: str
    api_key: str | None
    body: bytes


class Reply(NamedTuple):
    """The simulator's answer to one request."""

    status: int | None  # None: close the connection without answering
    payload: dict[str, object]
    delay: float  # seconds to wait before answering or closing


class _Outcome(NamedTuple):
    status: int
    payload: dict[str, object]
    executed: bool = False


class Simulator:
    """Thread-safe state of a simulated vendor: catalogue, prices, orders, faults.

    ``clock`` gives the wall time in seconds; ``advance`` adds an offset to it
    so that tests can move through repricing cycles without waiting.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._initial = config or SimulatorConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._config = self._initial
        self._catalogue: tuple[Stock, ...] = ()
        self._index: dict[str, int] = {}
        self._faults = Faults(self._initial.seed)
        self._orders: list[Order] = []
        self._offset = 0.0
        self.reset()

    @property
    def config(self) -> SimulatorConfig:
        """The knobs in force."""
        with self._lock:
            return self._config

    def configure(self, **knobs: Any) -> SimulatorConfig:
        """Change knobs at run time and return the new config.

        Raises ValueError for an unknown knob or an invalid value, leaving the
        simulator unchanged.  A new ``stocks`` or ``seed`` rebuilds the
        catalogue and restarts the fault draws.
        """
        unknown = sorted(set(knobs) - KNOBS)
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; known: {sorted(KNOBS)}")
        with self._lock:
            old, self._config = self._config, dataclasses.replace(self._config, **knobs)
            if (old.stocks, old.seed) != (self._config.stocks, self._config.seed):
                self._rebuild()
            return self._config

    def reset(self) -> None:
        """Return to the constructor's config; forget orders, stats and clock offset."""
        with self._lock:
            self._config = self._initial
            self._rebuild()
            self._orders.clear()
            self._offset = 0.0
            self._faults.clear()

    def _rebuild(self) -> None:
        """Build the catalogue of the config in force and restart the fault draws."""
        self._catalogue = build_catalogue(self._config.stocks, self._config.seed)
        self._index = {stock.symbol: index for index, stock in enumerate(self._catalogue)}
        self._faults.reseed(self._config.seed)

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward by ``seconds`` (>= 0)."""
        step = as_float("seconds", seconds)
        with self._lock:
            self._offset += step

    def now(self) -> float:
        """The simulator's time in seconds since the epoch (clock + advances)."""
        with self._lock:
            return self._clock() + self._offset

    def _now_ms(self) -> int:
        return math.floor(self.now() * 1000)

    def symbols(self) -> list[str]:
        """All symbols, in page order."""
        with self._lock:
            return [stock.symbol for stock in self._catalogue]

    def price(self, symbol: str) -> Decimal:
        """The current price of ``symbol``; KeyError when it is not listed."""
        with self._lock:
            return self._quote(self._catalogue[self._index[symbol]], self._now_ms()).price

    def orders(self) -> list[Order]:
        """Copies of the executed orders, oldest first."""
        with self._lock:
            return [order.copy() for order in self._orders]

    def page_count(self) -> int:
        """How many pages ``GET /stocks`` serves."""
        with self._lock:
            return -(-len(self._catalogue) // self._config.page_size)

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests per operation (``list``, ``buy``) and faults injected, by kind."""
        return self._faults.stats()

    def _quote(self, stock: Stock, now_ms: int) -> market.Quote:
        return market.quote(stock, self._config.seed, self._config.reprice_seconds, now_ms)

    def respond(self, request: Request) -> Reply:
        """Answer one HTTP request: auth, route, faults, then the operation."""
        operation, symbol = _route(request.method, request.path)
        fate = self._faults.draw(operation, self.config)
        expected = self.config.api_key.encode()
        if request.api_key is None or not hmac.compare_digest(request.api_key.encode(), expected):
            return Reply(HTTPStatus.FORBIDDEN, _message("Forbidden"), fate.delay)
        if operation is None:
            return Reply(HTTPStatus.NOT_FOUND, _message("Not Found"), fate.delay)
        if fate.drop:
            return self._fault("drop", Reply(None, {}, fate.delay))
        if fate.error:
            error = _message("Internal server error")
            return self._fault("error", Reply(HTTPStatus.INTERNAL_SERVER_ERROR, error, fate.delay))
        if operation == "list":
            outcome = self._list(request.query)
        elif operation == "buy":
            outcome = self._buy(symbol, request.body)
        else:
            outcome = self._admin(operation, request.body)
        if outcome.executed and fate.lost:
            return self._fault("lost", Reply(None, {}, fate.delay))
        reply = Reply(outcome.status, outcome.payload, fate.delay + fate.slow)
        return self._fault("slow", reply) if fate.slow else reply

    def _fault(self, kind: str, reply: Reply) -> Reply:
        """Count an injected fault of ``kind`` and pass ``reply`` through."""
        self._faults.count(kind)
        return reply

    def _list(self, query: str) -> _Outcome:
        """One page of ``GET /stocks``, starting after the symbol the token names."""
        tokens = parse_qs(query, keep_blank_values=True).get("nextToken")
        with self._lock:
            start = 0
            if tokens is not None:
                index = self._index.get(decode_token(tokens[0]) or "")
                if index is None:
                    return _Outcome(HTTPStatus.BAD_REQUEST, _message("Invalid nextToken"))
                start = index + 1
            page = self._catalogue[start : start + self._config.page_size]
            now_ms = self._now_ms()
            items = [self._item(stock, now_ms) for stock in page]
            more = start + len(page) < len(self._catalogue)
        data: dict[str, object] = {"items": items}
        if more:
            data["nextToken"] = encode_token(page[-1].symbol)
        return _Outcome(HTTPStatus.OK, {"status": 200, "data": data})

    def _item(self, stock: Stock, now_ms: int) -> dict[str, object]:
        quote = self._quote(stock, now_ms)
        return {
            "symbol": stock.symbol,
            "name": stock.name,
            "price": quote.price,
            "sector": stock.sector,
            "change": quote.change,
            "lastUpdated": market.vendor_time(quote.since_ms),
        }

    def _buy(self, symbol: str, body: bytes) -> _Outcome:
        """Execute a buy at the requested price when it is within the 2 % band."""
        with self._lock:
            index = self._index.get(symbol)
            if index is None:
                return _Outcome(HTTPStatus.NOT_FOUND, _message("Stock not found"))
            try:
                price, quantity = _parse_order(body)
            except ValueError as error:
                return _Outcome(HTTPStatus.BAD_REQUEST, _message(str(error)))
            now_ms = self._now_ms()
            current = self._quote(self._catalogue[index], now_ms).price
            if not market.within_band(price, current, in_floats=self._config.float_band):
                message = "Price must be within 2% of current price"
                return _Outcome(HTTPStatus.BAD_REQUEST, _message(message))
            order = Order(
                id=str(uuid.uuid4()),
                symbol=symbol,
                quantity=quantity,
                price=market.at_least_cents(price),
                total=market.at_least_cents(price * quantity),
                executedAt=market.vendor_time(now_ms),
            )
            self._orders.append(order)
        placed = {
            "symbol": order["symbol"],
            "quantity": order["quantity"],
            "price": order["price"],
            "total": order["total"],
        }
        payload = {"status": 200, "message": "Order placed successfully", "data": {"order": placed}}
        return _Outcome(HTTPStatus.OK, payload, executed=True)

    def _admin(self, operation: str, body: bytes) -> _Outcome:
        """The ``/_sim/*`` routes; a ValueError becomes 400 with its message."""
        payload: dict[str, object]
        try:
            match operation:
                case "orders":
                    payload = {"orders": self.orders()}
                case "stats":
                    payload = {**self.stats()}
                case "advance":
                    self.advance(as_float("seconds", _parse_object(body).get("seconds")))
                    payload = {"now": market.vendor_time(self._now_ms())}
                case "configure":
                    payload = self.configure(**_parse_object(body)).as_dict()
                case "reset":
                    self.reset()
                    payload = self.config.as_dict()
                case _:
                    payload = self.config.as_dict()
        except ValueError as error:
            return _Outcome(HTTPStatus.BAD_REQUEST, _message(str(error)))
        return _Outcome(HTTPStatus.OK, payload)


def _message(text: str) -> dict[str, object]:
    return {"message": text}


def _route(method: str, path: str) -> tuple[str | None, str]:
    """``(operation, symbol)`` of a request: operation None for an unknown route,
    symbol empty unless the operation is ``buy``."""
    if method == "GET" and path == "/stocks":
        return "list", ""
    buy = _BUY_PATH.fullmatch(path)
    if method == "POST" and buy:
        return "buy", unquote(buy.group(1))
    return _ADMIN_ROUTES.get((method, path)), ""


def _parse_object(body: bytes) -> dict[str, object]:
    """A request body as a JSON object, numbers with fractions as ``Decimal``."""
    try:
        value = loads(body)
    except ValueError as error:
        raise ValueError("Request body must be a JSON object") from error
    if not isinstance(value, dict):
        raise ValueError("Request body must be a JSON object")
    return value


def _parse_order(body: bytes) -> tuple[Decimal, int]:
    """``(price, quantity)`` of a buy body; ValueError with the client's message."""
    order = _parse_object(body)
    price, quantity = order.get("price"), order.get("quantity")
    if isinstance(price, bool) or not isinstance(price, int | Decimal):
        raise ValueError("price must be a number")
    if price <= 0:
        raise ValueError("price must be positive")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise ValueError("quantity must be a positive integer")
    return Decimal(price), quantity
