"""Prometheus metrics: every metric the service exports is declared here.

Names follow Prometheus conventions: one ``trading_`` prefix, base units,
counters ending in ``_total``, no unbounded labels (endpoints are Flask
endpoint names, never raw paths). Under gunicorn the client library's
multiprocess mode aggregates all workers (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

HTTP_REQUESTS = Counter(
    "trading_http_requests_total",
    "HTTP requests answered, by method, Flask endpoint and status code.",
    ["method", "endpoint", "status"],
)
HTTP_DURATION = Histogram(
    "trading_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and Flask endpoint.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
HTTP_IN_FLIGHT = Gauge(
    "trading_http_requests_in_flight",
    "HTTP requests being answered right now.",
    multiprocess_mode="livesum",
)
VENDOR_REQUESTS = Counter(
    "trading_vendor_requests_total",
    "Calls to the market vendor, by operation and outcome.",
    ["operation", "outcome"],
)
VENDOR_DURATION = Histogram(
    "trading_vendor_request_duration_seconds",
    "Time of one call to the market vendor, by operation.",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHE_REQUESTS = Counter(
    "trading_cache_requests_total",
    "Cache look-ups, by cache and result (hit, miss, stale, error).",
    ["cache", "result"],
)
REDIS_ERRORS = Counter(
    "trading_redis_errors_total",
    "Redis operations that failed and were bypassed, by component.",
    ["component"],
)
BUYS = Counter(
    "trading_buys_total",
    "Buy attempts by final status and reason.",
    ["status", "reason"],
)
BUY_VENDOR_ATTEMPTS = Counter(
    "trading_buy_vendor_attempts_total",
    "Order requests sent to the vendor, by outcome.",
    ["outcome"],
)
PRICE_CHECK_REJECTIONS = Counter(
    "trading_price_check_rejections_total",
    "Buys rejected because the price was outside the tolerance band.",
)
RATE_LIMITED = Counter(
    "trading_rate_limited_total",
    "Requests refused with 429, by limit (rate, concurrency).",
    ["limit"],
)

# Collectors that read shared state (Redis, the database) at scrape time; the
# jobs run in short-lived pods Prometheus never scrapes, so the web pods
# export what those jobs leave behind.
_state_collectors: list[Callable[[Flask], Iterable[Metric]]] = []


def state_collector(fn: Callable[[Flask], Iterable[Metric]]) -> Callable[[Flask], Iterable[Metric]]:
    """Register ``fn(app)`` to contribute metric families to every scrape."""
    _state_collectors.append(fn)
    return fn


class _StateCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        for fn in _state_collectors:
            yield from fn(self.app)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _endpoint() -> str:
    return request.url_rule.endpoint if request.url_rule else "unmatched"


def _method() -> str:
    # gunicorn accepts any token as a method: keep the label's values bounded.
    return request.method if request.method in _METHODS else "other"


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()
    HTTP_IN_FLIGHT.inc()


def _observe(response: Response) -> Response:
    if "metrics_started" in g:
        endpoint = _endpoint()
        method = _method()
        HTTP_DURATION.labels(method, endpoint).observe(time.perf_counter() - g.metrics_started)
        HTTP_REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
    return response


def _leave(_exc: BaseException | None) -> None:
    if g.pop("metrics_started", None) is not None:
        HTTP_IN_FLIGHT.dec()


def render(app: Flask) -> Response:
    """The exposition text: all workers' samples plus the shared-state families."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    state = CollectorRegistry()
    state.register(_StateCollector(app))
    return Response(body + generate_latest(state), content_type=CONTENT_TYPE_LATEST)


def register_request_metrics(app: Flask) -> None:
    """Count and time every request by Flask endpoint."""
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.teardown_request(_leave)
