"""Simulator of the external stock vendor API (DESIGN.md section 3).

A real HTTP server (standard library only) that answers exactly like the
vendor, so that tests, benchmarks and ``make run`` never need the real one:

- every route needs the header ``x-api-key``; a missing or wrong key gets
  ``403 {"message": "Forbidden"}``, an unknown route ``404 {"message": "Not Found"}``;
- ``GET /stocks[?nextToken=T]`` serves the catalogue page by page in a fixed,
  seeded, non-alphabetical order.  A token is standard base64 (with ``=``
  padding, so it must be URL-encoded) of ``{"symbol":"<last symbol of the
  previous page>"}``; the last page has no ``nextToken`` key at all;
- ``POST /stocks/{symbol}/buy`` with ``{"price": 220.67, "quantity": 1}``
  executes an order at the requested price when it lies within 2 % of the
  current price (inclusive band), else answers 400; unknown symbols get 404;
- every stock reprices once per ``reprice_seconds``, each at its own seeded
  phase inside the cycle, so the catalogue changes item by item;
- money is ``Decimal`` end to end and is written as exact JSON numbers;
- knobs inject latency, jitter, 5xx answers, slow answers, dropped
  connections and executed orders whose answer is lost.

Admin routes (key required, never delayed or faulty) let a test or benchmark
steer a simulator running in another process: ``GET /_sim/orders``,
``GET /_sim/stats``, ``GET|POST /_sim/config``, ``POST /_sim/advance``
(``{"seconds": 300}``) and ``POST /_sim/reset``.

Run it with ``python -m service.vendorapi.simulator --help``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, NamedTuple, NoReturn, Self, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

from service.config import SIMULATOR_API_KEY, SIMULATOR_PORT

OPERATIONS = ("list", "buy")
"""Vendor operations that are counted and that fault knobs may apply to."""

SECTORS = (
    "Technology",
    "Healthcare",
    "Financials",
    "Energy",
    "Consumer",
    "Industrials",
    "Utilities",
    "Materials",
    "Real Estate",
    "Communication",
)

PRICE_TOLERANCE = Decimal("0.02")
"""The vendor accepts a buy price p when |p - current| <= PRICE_TOLERANCE * current."""

_log = logging.getLogger(__name__)

_CENT = Decimal("0.01")
_SWING = Decimal("0.05")  # a cycle price is base * (1 + _SWING * u), u in [-1, 1)
_MIN_BASE_PRICE = 0.25
_MAX_BASE_PRICE = 2000.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_IDLE_CONNECTION_SECONDS = 60
_BUY_PATH = re.compile(r"/stocks/([^/]+)/buy")
_ADMIN_ROUTES = {
    ("GET", "/_sim/orders"): "orders",
    ("GET", "/_sim/stats"): "stats",
    ("GET", "/_sim/config"): "config",
    ("POST", "/_sim/config"): "configure",
    ("POST", "/_sim/advance"): "advance",
    ("POST", "/_sim/reset"): "reset",
}
_SIZE_KNOBS = ("stocks", "page_size", "reprice_seconds")
_RATE_KNOBS = ("error_rate", "timeout_rate", "drop_rate", "lost_rate")
_SECONDS_KNOBS = ("latency", "jitter", "slow_seconds")
_FAULTS = ("drop", "error", "lost", "slow")

_NAME_PREFIXES = (
    "Apex",
    "Atlas",
    "Blue Ridge",
    "Cobalt",
    "Crescent",
    "Evergreen",
    "Granite",
    "Harbor",
    "Horizon",
    "Keystone",
    "Liberty",
    "Meridian",
    "Northwind",
    "Orion",
    "Pioneer",
    "Redwood",
    "Silverline",
    "Sterling",
    "Summit",
    "Vantage",
)
_SECTOR_WORDS = {
    "Technology": ("Software", "Systems", "Semiconductor", "Networks", "Data"),
    "Healthcare": ("Therapeutics", "Biosciences", "Medical", "Health", "Pharma"),
    "Financials": ("Financial", "Capital", "Bancorp", "Insurance", "Trust"),
    "Energy": ("Energy", "Petroleum", "Solar", "Resources", "Pipeline"),
    "Consumer": ("Brands", "Foods", "Retail", "Apparel", "Beverage"),
    "Industrials": ("Industries", "Aerospace", "Machinery", "Logistics", "Rail"),
    "Utilities": ("Power", "Water", "Electric", "Gas", "Utilities"),
    "Materials": ("Chemicals", "Metals", "Mining", "Materials", "Paper"),
    "Real Estate": ("Realty", "Properties", "REIT", "Land", "Housing"),
    "Communication": ("Media", "Telecom", "Broadcasting", "Wireless", "Entertainment"),
}
_NAME_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Ltd.", "plc", "Co.")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SYMBOL_LENGTHS = (1, 2, 3, 4, 5)
_SYMBOL_LENGTH_WEIGHTS = (2, 8, 35, 45, 10)
_DOTTED_SYMBOL_SHARE = 0.04


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of a simulator; every instance is validated on creation.

    Rates are probabilities in [0, 1] drawn per request; durations are seconds.
    Fault knobs apply only to the operations named in ``fault_operations``
    (``"list"``, ``"buy"``); ``latency`` and ``jitter`` apply to every answer
    of those two operations.  Raises ``ValueError`` naming the bad knob.
    """

    stocks: int = 120
    page_size: int = 25
    seed: int = 42
    reprice_seconds: int = 300
    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    slow_seconds: float = 30.0
    drop_rate: float = 0.0
    lost_rate: float = 0.0
    fault_operations: tuple[str, ...] = OPERATIONS
    api_key: str = SIMULATOR_API_KEY

    def __post_init__(self) -> None:
        """Validate every knob and normalise numbers and sequences."""
        for name in _SIZE_KNOBS:
            self._set(name, _as_int(name, getattr(self, name), minimum=1))
        self._set("seed", _as_int("seed", self.seed))
        for name in _RATE_KNOBS:
            self._set(name, _as_float(name, getattr(self, name), maximum=1.0))
        for name in _SECONDS_KNOBS:
            self._set(name, _as_float(name, getattr(self, name)))
        self._set("fault_operations", _as_operations(self.fault_operations))
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("api_key must be a non-empty string")

    def _set(self, name: str, value: object) -> None:
        """Store a normalised value in this frozen instance (only from ``__post_init__``)."""
        object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, object]:
        """The knobs as a JSON-ready mapping (``fault_operations`` as a list)."""
        knobs = dataclasses.asdict(self)
        knobs["fault_operations"] = list(self.fault_operations)
        return knobs


_KNOBS = frozenset(field.name for field in dataclasses.fields(SimulatorConfig))


def _as_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an int of at least ``minimum``; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _as_float(name: str, value: object, maximum: float = math.inf) -> float:
    """``value`` as a finite float in [0, maximum]; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not 0.0 <= number <= maximum or math.isinf(number):
        bounds = f"in [0, {maximum:g}]" if maximum < math.inf else ">= 0 and finite"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return number


def _as_operations(value: object) -> tuple[str, ...]:
    """``value`` as a tuple of known operation names; ValueError otherwise."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"fault_operations must be a list of operation names, got {value!r}")
    unknown = [operation for operation in value if operation not in OPERATIONS]
    if unknown:
        raise ValueError(f"fault_operations: unknown {unknown!r}; known: {list(OPERATIONS)}")
    return tuple(dict.fromkeys(value))


class Order(TypedDict):
    """An order the simulator executed (``price`` and ``total`` have >= 2 decimals)."""

    id: str
    symbol: str
    quantity: int
    price: Decimal
    total: Decimal
    executedAt: str


@dataclass(frozen=True)
class _Stock:
    symbol: str
    name: str
    sector: str
    base: Decimal
    phase_key: int  # the stock reprices at phase_key % cycle_ms inside each cycle


class _Quote(NamedTuple):
    price: Decimal
    change: Decimal
    since_ms: int  # when this price took effect, in ms since the epoch


class _Request(NamedTuple):
    method: str
    path: str
    query: str
    api_key: str | None
    body: bytes


class _Outcome(NamedTuple):
    status: int
    payload: dict[str, object]
    executed: bool = False


class _Reply(NamedTuple):
    status: int | None  # None: close the connection without answering
    payload: dict[str, object]
    delay: float  # seconds to wait before answering or closing


@dataclass(frozen=True)
class _Fate:
    """What the fault knobs decided for one request."""

    delay: float = 0.0
    drop: bool = False
    error: bool = False
    lost: bool = False
    slow: float = 0.0


def _message(text: str) -> dict[str, object]:
    return {"message": text}


def _hash64(*parts: object) -> int:
    """A stable 64-bit hash of ``parts`` (independent of PYTHONHASHSEED)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _at_least_cents(amount: Decimal) -> Decimal:
    """``amount`` written with at least two decimals (220 -> 220.00, 0.2551 unchanged)."""
    cents = amount.quantize(_CENT)
    return cents if cents == amount else amount


def _iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``, e.g. ``2026-11-24T23:35:00.000Z``."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _encode_token(symbol: str) -> str:
    """The page token that continues after ``symbol``: base64 of compact JSON."""
    compact = json.dumps({"symbol": symbol}, separators=(",", ":"))
    return base64.b64encode(compact.encode()).decode("ascii")


def _decode_token(token: str) -> str | None:
    """The symbol a token names, or None when it is not base64 JSON of one."""
    try:
        decoded = json.loads(base64.b64decode(token, validate=True))
    except ValueError:  # covers binascii.Error, UnicodeDecodeError, JSONDecodeError
        return None
    symbol = decoded.get("symbol") if isinstance(decoded, dict) else None
    return symbol if isinstance(symbol, str) else None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def _parse_object(body: bytes) -> dict[str, object]:
    """A request body as a JSON object, numbers with fractions as ``Decimal``."""
    try:
        value = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
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


def _dumps(value: object) -> str:
    """Compact JSON in which a ``Decimal`` is written as an exact number."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        pairs = (f"{json.dumps(str(key))}:{_dumps(item)}" for key, item in value.items())
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_dumps(item) for item in value) + "]"
    return json.dumps(value)


def _route(method: str, path: str) -> tuple[str | None, str]:
    """``(operation, symbol)`` of a request: operation None for an unknown route,
    symbol empty unless the operation is ``buy``."""
    if method == "GET" and path == "/stocks":
        return "list", ""
    buy = _BUY_PATH.fullmatch(path)
    if method == "POST" and buy:
        return "buy", unquote(buy.group(1))
    return _ADMIN_ROUTES.get((method, path)), ""


def _new_stock(seed: int, symbol: str, name: str, sector: str, base: Decimal) -> _Stock:
    return _Stock(symbol, name, sector, base, _hash64(seed, symbol, "phase"))


def _random_symbol(rng: random.Random) -> str:
    """1-5 uppercase letters, or now and then a class share such as ``BRK.B``."""
    if rng.random() < _DOTTED_SYMBOL_SHARE:
        return "".join(rng.choices(_LETTERS, k=3)) + "." + rng.choice("AB")
    (length,) = rng.choices(_SYMBOL_LENGTHS, weights=_SYMBOL_LENGTH_WEIGHTS)
    return "".join(rng.choices(_LETTERS, k=length))


def _build_catalogue(stocks: int, seed: int) -> tuple[_Stock, ...]:
    """``stocks`` seeded stocks in page order, always with AAPL and (from 10 on) PNNY.

    Base prices are log-uniform in [0.25, 2000]; the page order is a seeded
    shuffle that is never alphabetical when there are two stocks or more.
    """
    rng = random.Random(seed)
    fixed = [
        _new_stock(seed, "AAPL", "Apple Inc.", "Technology", Decimal("220.67")),
        _new_stock(seed, "PNNY", "Penny Mining Corp.", "Materials", Decimal("0.25")),
    ]
    catalogue = fixed[: 1 if stocks < 10 else 2]
    taken = {stock.symbol for stock in catalogue}
    while len(catalogue) < stocks:
        symbol = _random_symbol(rng)
        if symbol in taken:
            continue
        taken.add(symbol)
        sector = rng.choice(SECTORS)
        words = (_NAME_PREFIXES, _SECTOR_WORDS[sector], _NAME_SUFFIXES)
        name = " ".join(rng.choice(choices) for choices in words)
        price = math.exp(rng.uniform(math.log(_MIN_BASE_PRICE), math.log(_MAX_BASE_PRICE)))
        base = Decimal(price).quantize(_CENT, ROUND_HALF_UP)
        catalogue.append(_new_stock(seed, symbol, name, sector, base))
    rng.shuffle(catalogue)
    if len(catalogue) > 1 and [stock.symbol for stock in catalogue] == sorted(taken):
        catalogue.reverse()
    return tuple(catalogue)


def _cycle_price(seed: int, stock: _Stock, cycle: int) -> Decimal:
    """The price of ``stock`` during ``cycle``: base +/- 5 %, in cents, >= 0.01."""
    unit = Decimal(_hash64(seed, stock.symbol, cycle)) / Decimal(2**63) - 1
    return max((stock.base * (1 + _SWING * unit)).quantize(_CENT, ROUND_HALF_UP), _CENT)


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
        self._catalogue: tuple[_Stock, ...] = ()
        self._index: dict[str, int] = {}
        self._rng = random.Random()
        self._orders: list[Order] = []
        self._offset = 0.0
        self._requests: dict[str, int] = {}
        self._faults: dict[str, int] = {}
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
        unknown = sorted(set(knobs) - _KNOBS)
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; known: {sorted(_KNOBS)}")
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
            self._requests = dict.fromkeys(OPERATIONS, 0)
            self._faults = dict.fromkeys(_FAULTS, 0)

    def _rebuild(self) -> None:
        """Build the catalogue of the config in force and restart the fault draws."""
        self._catalogue = _build_catalogue(self._config.stocks, self._config.seed)
        self._index = {stock.symbol: index for index, stock in enumerate(self._catalogue)}
        self._rng = random.Random(f"{self._config.seed}:faults")

    def advance(self, seconds: float) -> None:
        """Move the simulator's clock forward by ``seconds`` (>= 0)."""
        step = _as_float("seconds", seconds)
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
        with self._lock:
            return {"requests": dict(self._requests), "faults": dict(self._faults)}

    def _quote(self, stock: _Stock, now_ms: int) -> _Quote:
        """Price, change since the previous cycle and repricing moment of ``stock``."""
        cycle_ms = self._config.reprice_seconds * 1000
        phase = stock.phase_key % cycle_ms
        cycle = (now_ms - phase) // cycle_ms
        price = _cycle_price(self._config.seed, stock, cycle)
        change = price - _cycle_price(self._config.seed, stock, cycle - 1)
        return _Quote(price, change, cycle * cycle_ms + phase)

    def _respond(self, request: _Request) -> _Reply:
        """Answer one HTTP request: auth, route, faults, then the operation."""
        operation, symbol = _route(request.method, request.path)
        fate = self._draw_fate(operation)
        expected = self.config.api_key.encode()
        if request.api_key is None or not hmac.compare_digest(request.api_key.encode(), expected):
            return _Reply(HTTPStatus.FORBIDDEN, _message("Forbidden"), fate.delay)
        if operation is None:
            return _Reply(HTTPStatus.NOT_FOUND, _message("Not Found"), fate.delay)
        if fate.drop:
            return self._fault("drop", _Reply(None, {}, fate.delay))
        if fate.error:
            return self._fault(
                "error",
                _Reply(
                    HTTPStatus.INTERNAL_SERVER_ERROR, _message("Internal server error"), fate.delay
                ),
            )
        if operation == "list":
            outcome = self._list(request.query)
        elif operation == "buy":
            outcome = self._buy(symbol, request.body)
        else:
            outcome = self._admin(operation, request.body)
        if outcome.executed and fate.lost:
            return self._fault("lost", _Reply(None, {}, fate.delay))
        reply = _Reply(outcome.status, outcome.payload, fate.delay + fate.slow)
        return self._fault("slow", reply) if fate.slow else reply

    def _draw_fate(self, operation: str | None) -> _Fate:
        """Count a vendor operation and draw its faults; other routes get none."""
        with self._lock:
            if operation not in OPERATIONS:
                return _Fate()
            self._requests[operation] += 1
            config = self._config
            drop, error, lost, slow, jitter = (self._rng.random() for _ in range(5))
            faulty = operation in config.fault_operations
            return _Fate(
                delay=config.latency + jitter * config.jitter,
                drop=faulty and drop < config.drop_rate,
                error=faulty and error < config.error_rate,
                lost=faulty and lost < config.lost_rate,
                slow=config.slow_seconds if faulty and slow < config.timeout_rate else 0.0,
            )

    def _fault(self, kind: str, reply: _Reply) -> _Reply:
        """Count an injected fault of ``kind`` and pass ``reply`` through."""
        with self._lock:
            self._faults[kind] += 1
        return reply

    def _list(self, query: str) -> _Outcome:
        """One page of ``GET /stocks``, starting after the symbol the token names."""
        tokens = parse_qs(query, keep_blank_values=True).get("nextToken")
        with self._lock:
            start = 0
            if tokens is not None:
                index = self._index.get(_decode_token(tokens[0]) or "")
                if index is None:
                    return _Outcome(HTTPStatus.BAD_REQUEST, _message("Invalid nextToken"))
                start = index + 1
            page = self._catalogue[start : start + self._config.page_size]
            now_ms = self._now_ms()
            items = [self._item(stock, now_ms) for stock in page]
            more = start + len(page) < len(self._catalogue)
        data: dict[str, object] = {"items": items}
        if more:
            data["nextToken"] = _encode_token(page[-1].symbol)
        return _Outcome(HTTPStatus.OK, {"status": 200, "data": data})

    def _item(self, stock: _Stock, now_ms: int) -> dict[str, object]:
        quote = self._quote(stock, now_ms)
        return {
            "symbol": stock.symbol,
            "name": stock.name,
            "price": quote.price,
            "sector": stock.sector,
            "change": quote.change,
            "lastUpdated": _iso(quote.since_ms),
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
            if abs(price - current) > PRICE_TOLERANCE * current:
                message = "Price must be within 2% of current price"
                return _Outcome(HTTPStatus.BAD_REQUEST, _message(message))
            order = Order(
                id=str(uuid.uuid4()),
                symbol=symbol,
                quantity=quantity,
                price=_at_least_cents(price),
                total=_at_least_cents(price * quantity),
                executedAt=_iso(now_ms),
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
                    self.advance(_as_float("seconds", _parse_object(body).get("seconds")))
                    payload = {"now": _iso(self._now_ms())}
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


class _HTTPServer(ThreadingHTTPServer):
    """Threaded HTTP server that knows its simulator and its open connections."""

    daemon_threads = True
    # socketserver's default backlog of 5 overflows under concurrent tests and
    # benchmarks; the kernel then delays reconnects by seconds.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, connection: socket.socket, *, open_: bool) -> None:
        """Remember (``open_``) or forget a client connection."""
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open client connection (keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log, instead of printing, errors of a handler thread."""
        if isinstance(sys.exc_info()[1], OSError):
            _log.debug("connection from %s ended early", client_address, exc_info=True)
        else:
            _log.exception("error while answering %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Translates HTTP requests to ``Simulator._respond`` and its replies back."""

    protocol_version = "HTTP/1.1"
    server_version = "VendorSimulator/1.0"
    timeout = _IDLE_CONNECTION_SECONDS
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stalls
    server: _HTTPServer

    def setup(self) -> None:
        """Register the connection so that ``shutdown`` can close it."""
        super().setup()
        self.server.track(self.connection, open_=True)

    def finish(self) -> None:
        """Unregister the connection."""
        try:
            super().finish()
        finally:
            self.server.track(self.connection, open_=False)

    def _handle(self) -> None:
        """Answer one request (any method), after the delay the simulator decided."""
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        request = _Request(self.command, url.path, url.query, self.headers.get("x-api-key"), body)
        reply = self.server.simulator._respond(request)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status is None:
            self.close_connection = True
        else:
            self._send_json(reply.status, reply.payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _read_body(self) -> bytes | None:
        """The request body per Content-Length, or None after answering 4xx."""
        if "Transfer-Encoding" in self.headers:
            self.send_error(HTTPStatus.LENGTH_REQUIRED)
            return None
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdecimal():
            self.send_error(HTTPStatus.BAD_REQUEST, "Invalid Content-Length")
            return None
        return self.rfile.read(int(length))

    def _send_json(self, status: int, payload: dict[str, object]) -> None:
        """Write a JSON answer with Content-Length, so the connection can be kept alive."""
        body = _dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer protocol-level errors in JSON too, then close the connection."""
        self.close_connection = True
        self._send_json(code, _message(message or HTTPStatus(code).phrase))

    def log_message(self, format: str, *args: Any) -> None:
        """Send the per-request log line to DEBUG instead of stderr."""
        _log.debug("%s - %s", self.address_string(), format % args)


class SimulatorServer:
    """A running simulator HTTP server (see ``serve``); also a context manager."""

    def __init__(self, httpd: _HTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        host, port = httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.simulator = httpd.simulator

    def shutdown(self) -> None:
        """Stop serving, close the listening socket and every open connection."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.shutdown()


def serve(simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> SimulatorServer:
    """Serve ``simulator`` over HTTP from a daemon thread; port 0 picks a free port."""
    httpd = _HTTPServer((host, port), simulator)
    thread = threading.Thread(
        target=httpd.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="vendor-simulator",
        daemon=True,
    )
    thread.start()
    return SimulatorServer(httpd, thread)


def _operations_arg(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parser() -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m service.vendorapi.simulator",
        description="Simulated stock vendor API (DESIGN.md section 3). Accepts the key in "
        f"VENDOR_API_KEY, else {SIMULATOR_API_KEY!r}. Admin routes: /_sim/orders, /_sim/stats, "
        "/_sim/config, /_sim/advance, /_sim/reset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to listen on")
    add("--port", type=int, default=SIMULATOR_PORT, help="port to listen on (0 picks a free one)")
    add("--stocks", type=int, default=defaults.stocks, help="number of stocks in the catalogue")
    add("--page-size", type=int, default=defaults.page_size, help="items per GET /stocks page")
    add("--seed", type=int, default=defaults.seed, help="seed of the catalogue, prices and faults")
    add(
        "--reprice-seconds",
        type=int,
        default=defaults.reprice_seconds,
        help="length of a repricing cycle",
    )
    add("--latency", type=float, default=defaults.latency, help="seconds added before every answer")
    add(
        "--jitter",
        type=float,
        default=defaults.jitter,
        help="extra random 0..JITTER seconds per answer",
    )
    add(
        "--error-rate",
        type=float,
        default=defaults.error_rate,
        help="share of 500 answers (nothing executed)",
    )
    add(
        "--timeout-rate",
        type=float,
        default=defaults.timeout_rate,
        help="share of slow answers (still executed)",
    )
    add(
        "--slow-seconds",
        type=float,
        default=defaults.slow_seconds,
        help="how long a slow answer takes",
    )
    add(
        "--drop-rate",
        type=float,
        default=defaults.drop_rate,
        help="share of connections closed unanswered",
    )
    add(
        "--lost-rate",
        type=float,
        default=defaults.lost_rate,
        help="share of buys executed but left unanswered",
    )
    add(
        "--fault-operations",
        type=_operations_arg,
        default=defaults.fault_operations,
        help="comma list of operations (list,buy) the fault knobs apply to",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT or SIGTERM; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        config = SimulatorConfig(
            stocks=args.stocks,
            page_size=args.page_size,
            seed=args.seed,
            reprice_seconds=args.reprice_seconds,
            latency=args.latency,
            jitter=args.jitter,
            error_rate=args.error_rate,
            timeout_rate=args.timeout_rate,
            slow_seconds=args.slow_seconds,
            drop_rate=args.drop_rate,
            lost_rate=args.lost_rate,
            fault_operations=args.fault_operations,
            api_key=os.environ.get("VENDOR_API_KEY") or SIMULATOR_API_KEY,
        )
    except ValueError as error:
        parser.error(str(error))
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        server = serve(Simulator(config), args.host, args.port)
    except OSError as error:
        where = f"{args.host}:{args.port}"
        print(f"vendor simulator: cannot listen on {where}: {error.strerror}", file=sys.stderr)
        return 1
    shape = f"{config.stocks} stocks, {config.page_size} per page, seed {config.seed}"
    print(f"vendor simulator on {server.url} ({shape})", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
