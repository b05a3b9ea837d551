"""HTTP client of the market vendor (DESIGN §3).

Every call has an explicit ``(connect, read)`` timeout, goes through a circuit
breaker whose state lives in Redis (shared by all workers and pods), is timed
and counted per operation and outcome, and turns library exceptions into one
:class:`~service.vendorapi.errors.VendorError` subclass with a machine-readable code.

Reads (``list_stocks``) are retried with jittered exponential backoff because
they are safe to repeat. Orders (``place_order``) are sent exactly once per
call: whether to try again is the caller's decision, taken from the error's
``retriable`` flag (a 5xx, or a request that never left).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import quote

import pybreaker
import requests
from flask import Flask, current_app
from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis
from requests.adapters import HTTPAdapter
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from urllib3.exceptions import NewConnectionError

from service.config import Settings
from service.metrics import VENDOR_DURATION, VENDOR_REQUESTS
from service.vendorapi.circuit import SharedCircuit
from service.vendorapi.errors import (
    CircuitOpen,
    UnknownSymbol,
    VendorAnswerLost,
    VendorBadResponse,
    VendorError,
    VendorGatewayError,
    VendorRejected,
    VendorServerError,
    VendorTimeout,
    VendorUnreachable,
)
from service.vendorapi.wire import dumps, parse_vendor_time

log = logging.getLogger(__name__)
T = TypeVar("T")

LIST_ATTEMPTS = 3
POOL_SIZE = 32


@dataclass(frozen=True)
class VendorStock:
    """One catalogue item as the vendor prices it."""

    symbol: str
    name: str
    price: Decimal
    sector: str
    change: Decimal
    last_updated: datetime


@dataclass(frozen=True)
class SkippedItem:
    """A catalogue item the vendor sent that could not be read."""

    symbol: str | None  # when at least the symbol was readable
    reason: str


@dataclass(frozen=True)
class StockPage:
    """One vendor page; ``next_token`` is ``None`` on the last page.

    ``skipped`` lists the items that could not be read: one malformed item
    does not cost the other items of its page.
    """

    items: tuple[VendorStock, ...]
    next_token: str | None
    skipped: tuple[SkippedItem, ...] = ()


@dataclass(frozen=True)
class VendorOrder:
    """An order the vendor says it executed."""

    symbol: str
    quantity: int
    price: Decimal
    total: Decimal


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise ValueError(f"not a decimal number: {value!r}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _parse_stock(item: Mapping[str, Any]) -> VendorStock:
    return VendorStock(
        symbol=str(item["symbol"]),
        name=str(item["name"]),
        price=_decimal(item["price"]),
        sector=str(item["sector"]),
        change=_decimal(item.get("change", 0)),
        last_updated=parse_vendor_time(str(item["lastUpdated"])),
    )


class VendorClient:
    """Talks to the vendor. Thread-safe; one instance per app."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_seconds: float,
        redis: Redis,
        *,
        fail_max: int = 5,
        reset_timeout: int = 30,
        session: requests.Session | None = None,
        list_wait: Callable[..., float] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (timeout_seconds, timeout_seconds)
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"x-api-key": api_key, "Accept": "application/json"})
        # The environment's proxy and CA bundle settings for the vendor's URL,
        # read once: requests reads them again on every call otherwise
        # (``os.environ`` walked several times, ≈ 0.5 ms of CPU per call).
        environment = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.proxies.update(environment["proxies"])
        self.session.verify = environment["verify"]
        self.session.cert = environment["cert"]
        self.session.trust_env = False
        self.circuit = SharedCircuit(
            redis, fail_max, reset_timeout, exclude=(VendorRejected, VendorBadResponse)
        )
        self._list_wait = list_wait or wait_exponential_jitter(multiplier=0.1, max=1.0, jitter=0.1)

    # --- public operations ---------------------------------------------------

    def list_stocks(self, token: str | None = None) -> StockPage:
        """Fetch one catalogue page (the first when ``token`` is ``None``).

        Unreadable items are logged and reported in ``StockPage.skipped``.

        :raises VendorBadResponse: the page itself cannot be read;
        :raises VendorRejected: 4xx (e.g. an unknown token);
        :raises CircuitOpen: the circuit is open;
        :raises VendorError: after ``LIST_ATTEMPTS`` transient failures.
        """
        params = {"nextToken": token} if token is not None else None
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, VendorError) and exc.transient),
            stop=stop_after_attempt(LIST_ATTEMPTS),
            wait=self._list_wait,
            reraise=True,
        )
        body = retrying(self._call, "list_stocks", "GET", "/stocks", params=params)
        try:
            data = body["data"]
            raw_items = data["items"]
            next_token = data.get("nextToken") or None
            if not isinstance(raw_items, list):
                raise TypeError("items is not a list")
        except (KeyError, TypeError, AttributeError) as exc:
            raise VendorBadResponse(f"unreadable stock page: {exc}") from exc
        items: list[VendorStock] = []
        skipped: list[SkippedItem] = []
        for raw in raw_items:
            try:
                items.append(_parse_stock(raw))
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                symbol = raw.get("symbol") if isinstance(raw, Mapping) else None
                skipped.append(SkippedItem(symbol if isinstance(symbol, str) else None, repr(exc)))
                log.warning("unreadable vendor item skipped", extra={"item": repr(raw)[:200]})
        return StockPage(items=tuple(items), next_token=next_token, skipped=tuple(skipped))

    def place_order(self, symbol: str, price: Decimal, quantity: int) -> VendorOrder:
        """Send one order, once.

        :raises UnknownSymbol: the vendor does not know ``symbol`` (404);
        :raises VendorRejected: any other 4xx, with the vendor's message;
        :raises VendorServerError / VendorUnreachable: safe to retry;
        :raises VendorTimeout / VendorAnswerLost: sent, outcome unknown;
        :raises CircuitOpen: nothing was sent.
        """
        path = f"/stocks/{quote(symbol, safe='')}/buy"
        payload = dumps({"price": price, "quantity": int(quantity)})
        body = self._call(
            "buy", "POST", path, data=payload, headers={"Content-Type": "application/json"}
        )
        try:
            order = body["data"]["order"]
            return VendorOrder(
                symbol=str(order["symbol"]),
                quantity=int(order["quantity"]),
                price=_decimal(order["price"]),
                total=_decimal(order["total"]),
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise VendorBadResponse(f"unreadable order confirmation: {exc}") from exc

    def circuit_is_open(self) -> bool:
        return self.circuit.is_open()

    def circuit_retry_after(self) -> int:
        """Seconds until the open circuit lets a trial call through (at least 1)."""
        return self.circuit.retry_after()

    # --- plumbing ------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return self.circuit.breaker().call(self._send, method, path, **kwargs)
        except pybreaker.CircuitBreakerError:
            outcome = "circuit_open"
            raise CircuitOpen(retry_after=self.circuit_retry_after()) from None
        except VendorError as exc:
            outcome = _OUTCOMES.get(type(exc), "server_error")
            raise
        finally:
            VENDOR_REQUESTS.labels(operation, outcome).inc()
            if outcome != "circuit_open":
                VENDOR_DURATION.labels(operation).observe(time.perf_counter() - started)

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.ConnectTimeout as exc:
            raise VendorUnreachable(f"connect timeout: {exc}") from exc
        except requests.ReadTimeout as exc:
            raise VendorTimeout() from exc
        except requests.ConnectionError as exc:
            if _never_connected(exc):
                raise VendorUnreachable() from exc
            raise VendorAnswerLost() from exc
        with response:
            return _read_body(response)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection was refused or unresolvable: nothing was sent."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _read_body(response: requests.Response) -> Any:
    try:
        body = response.json(parse_float=Decimal)
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    status = response.status_code
    if status == 404 and "/buy" in response.request.path_url:
        raise UnknownSymbol(message or "Stock not found", vendor_status=status)
    if status == 429:
        # The vendor's own rate limit: nothing was executed, a later try may pass.
        raise VendorServerError(message or "vendor answered 429", vendor_status=status)
    if 400 <= status < 500:
        raise VendorRejected(message or f"vendor answered {status}", vendor_status=status)
    if status in (502, 504):
        raise VendorGatewayError(message or f"vendor answered {status}", vendor_status=status)
    if status >= 500:
        raise VendorServerError(message or f"vendor answered {status}", vendor_status=status)
    if body is None or status != 200:
        raise VendorBadResponse(f"unexpected answer {status}", vendor_status=status)
    return body


_OUTCOMES: dict[type[VendorError], str] = {
    VendorRejected: "client_error",
    UnknownSymbol: "client_error",
    VendorServerError: "server_error",
    VendorGatewayError: "server_error",
    VendorBadResponse: "server_error",
    VendorTimeout: "timeout",
    VendorUnreachable: "connection_error",
    VendorAnswerLost: "lost",
}


def register_vendor(app: Flask, settings: Settings) -> None:
    """Attach a vendor client to ``app`` (it connects lazily, on first use)."""
    app.extensions["vendor"] = VendorClient(
        settings.vendor_base_url,
        settings.vendor_api_key,
        float(settings.vendor_timeout_seconds),
        app.extensions["redis"],
        fail_max=settings.vendor_circuit_fail_max,
        reset_timeout=settings.vendor_circuit_reset_seconds,
    )


def circuit_state(app: Flask) -> Iterator[Metric]:
    """``trading_vendor_circuit_open``: 1 while the shared circuit is open."""
    client: VendorClient = app.extensions["vendor"]
    yield GaugeMetricFamily(
        "trading_vendor_circuit_open",
        "1 while the vendor circuit breaker is open (calls refused), else 0.",
        value=int(client.circuit_is_open()),
    )


def vendor_client() -> VendorClient:
    """The current app's vendor client."""
    client: VendorClient = current_app.extensions["vendor"]
    return client
