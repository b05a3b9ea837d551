"""HTTP client of the market vendor (DESIGN §3).

Every call has an explicit connect and read timeout, goes through a circuit
breaker whose state lives in Redis (shared by all workers and pods), is timed
and counted per operation and outcome, and turns library exceptions into one
:class:`~service.vendorapi.errors.VendorError` subclass with a machine-readable code.

Reads (``list_stocks``) are retried with jittered exponential backoff because
they are safe to repeat. Orders (``place_order``) are sent exactly once per
call: whether to try again is the caller's decision, taken from the error's
``retriable`` flag (a 5xx, or a request that never left).

The calls go through urllib3's connection pools directly, not through
``requests`` (whose sessions merge settings, cookies and hooks on every call,
≈ 0.4 ms of CPU per call on a slow machine); ``requests`` only reads the
environment's proxy and CA bundle settings once, as its users expect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import pybreaker
import requests
import urllib3
from flask import Flask, current_app
from prometheus_client.core import GaugeMetricFamily, Metric
from redis import Redis
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)

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
from service.vendorapi.wire import dumps, loads, parse_vendor_time

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
        list_wait: Callable[..., float] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = urllib3.Timeout(connect=timeout_seconds, read=timeout_seconds)
        self.pool = _connection_pool(self.base_url)
        # The host's own pool takes the request target; a ProxyManager, the URL.
        self._target_prefix = (
            self.base_url
            if isinstance(self.pool, urllib3.PoolManager)
            else urllib3.util.parse_url(self.base_url).path or ""
        )
        self.headers = {"x-api-key": api_key, "Accept": "application/json"}
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
        query = f"?{urlencode({'nextToken': token})}" if token is not None else ""
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, VendorError) and exc.transient),
            stop=stop_after_attempt(LIST_ATTEMPTS),
            wait=self._list_wait,
            reraise=True,
        )
        body = retrying(self._call, "list_stocks", "GET", "/stocks" + query)
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
        body = self._call("buy", "POST", path, payload)
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

    def close(self) -> None:
        """Close the pooled connections (the client opens new ones if used again)."""
        if isinstance(self.pool, urllib3.PoolManager):
            self.pool.clear()
        else:
            self.pool.close()  # a closed host pool takes no more requests: a new one will
            self.pool = _connection_pool(self.base_url)

    def circuit_is_open(self) -> bool:
        return self.circuit.is_open()

    def circuit_retry_after(self) -> int:
        """Seconds until the open circuit lets a trial call through (at least 1)."""
        return self.circuit.retry_after()

    # --- plumbing ------------------------------------------------------------

    def _call(self, operation: str, method: str, path: str, payload: str | None = None) -> Any:
        started = time.perf_counter()
        outcome = "ok"
        try:
            return self.circuit.breaker().call(self._send, method, path, payload)
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

    def _send(self, method: str, path: str, payload: str | None) -> Any:
        headers = self.headers
        if payload is not None:
            headers = {**headers, "Content-Type": "application/json"}
        try:
            # No retries and no redirects: whether to send again is the caller's decision.
            response = self.pool.request(
                method,
                self._target_prefix + path,
                body=payload,
                headers=headers,
                timeout=self.timeout,
                retries=False,
            )
        except NewConnectionError as exc:  # refused or unresolvable: nothing was sent
            raise VendorUnreachable() from exc
        except ConnectTimeoutError as exc:
            raise VendorUnreachable(f"connect timeout: {exc}") from exc
        except ReadTimeoutError as exc:
            raise VendorTimeout() from exc
        except ProxyError as exc:
            if isinstance(exc.original_error, NewConnectionError):
                raise VendorUnreachable() from exc
            raise VendorAnswerLost() from exc
        except urllib3.exceptions.HTTPError as exc:  # the connection broke once the request left
            raise VendorAnswerLost() from exc
        return _read_body(response.status, response.data, is_order=path.endswith("/buy"))


def _connection_pool(base_url: str) -> urllib3.PoolManager | urllib3.HTTPConnectionPool:
    """The connection pool of ``base_url``'s host, with the environment's
    proxy and CA bundle settings as ``requests`` reads them (``HTTP(S)_PROXY``,
    ``NO_PROXY``, ``REQUESTS_CA_BUNDLE`` …), read once, when the client is
    built. Through a proxy, a ``ProxyManager``; else the host's own pool, not a
    ``PoolManager`` (whose routing of each request to its pool cost 0.15 ms of
    CPU per call)."""
    environment = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
    verify = environment["verify"]
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
    if verify:
        bundle = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
        tls["ca_cert_dir" if Path(bundle).is_dir() else "ca_certs"] = bundle
    proxy = select_proxy(base_url, environment["proxies"])
    if proxy:
        return urllib3.ProxyManager(proxy, num_pools=1, maxsize=POOL_SIZE, **tls)
    if urllib3.util.parse_url(base_url).scheme != "https":
        tls = {}
    return urllib3.connection_from_url(base_url, maxsize=POOL_SIZE, **tls)


def _read_body(status: int, data: bytes, *, is_order: bool) -> Any:
    try:
        body = loads(data)
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if status == 404 and is_order:
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
