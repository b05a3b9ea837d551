"""Prometheus metrics: every metric the service exports is declared here.

Metrics are declared unregistered (``registry=None``) and registered by
:func:`register_metrics`, which the app factory calls: nothing is exported by
an import side effect. Gauges that describe shared state (the circuit, the
jobs' last runs) are read at scrape time by the collectors the app factory
hands to :func:`register_state_collectors`, so the web pods export what the
CronJobs (never scraped themselves) leave behind.

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

from service.logging import log_request

HTTP_REQUESTS = Counter(
    "trading_http_requests_total",
    "HTTP requests answered, by method, Flask endpoint and status code.",
    ["method", "endpoint", "status"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "trading_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and Flask endpoint.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
HTTP_IN_FLIGHT = Gauge(
    "trading_http_requests_in_flight",
    "HTTP requests being answered right now.",
    multiprocess_mode="livesum",
    registry=None,
)
VENDOR_REQUESTS = Counter(
    "trading_vendor_requests_total",
    "Calls to the market vendor, by operation and outcome.",
    ["operation", "outcome"],
    registry=None,
)
VENDOR_DURATION = Histogram(
    "trading_vendor_request_duration_seconds",
    "Time of one call to the market vendor, by operation.",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,
)
CACHE_REQUESTS = Counter(
    "trading_cache_requests_total",
    "Cache look-ups, by cache and result (hit, miss, stale, error).",
    ["cache", "result"],
    registry=None,
)
REDIS_ERRORS = Counter(
    "trading_redis_errors_total",
    "Redis operations that failed and were bypassed, by component.",
    ["component"],
    registry=None,
)
BUYS = Counter(
    "trading_buys_total",
    "Buy attempts by final status and reason.",
    ["status", "reason"],
    registry=None,
)
BUY_VENDOR_ATTEMPTS = Counter(
    "trading_buy_vendor_attempts_total",
    "Order requests sent to the vendor, by outcome.",
    ["outcome"],
    registry=None,
)
PRICE_CHECK_REJECTIONS = Counter(
    "trading_price_check_rejections_total",
    "Buys rejected because the price was outside the tolerance band.",
    registry=None,
)
RATE_LIMITED = Counter(
    "trading_rate_limited_total",
    "Requests refused with 429, by limit (rate, user_rate, concurrency).",
    ["limit"],
    registry=None,
)

ALL_METRICS: tuple[Counter | Gauge | Histogram, ...] = (
    HTTP_REQUESTS,
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    VENDOR_REQUESTS,
    VENDOR_DURATION,
    CACHE_REQUESTS,
    REDIS_ERRORS,
    BUYS,
    BUY_VENDOR_ATTEMPTS,
    PRICE_CHECK_REJECTIONS,
    RATE_LIMITED,
)
_registered: set[int] = set()  # ids of the registries ALL_METRICS are in

StateCollector = Callable[[Flask], Iterable[Metric]]
"""Reads shared state (Redis, the database) at scrape time and yields metric families."""


def register_metrics(registry: CollectorRegistry = REGISTRY) -> None:
    """Register every metric of the service in ``registry``, once per process
    (a process may build several apps, each calling this)."""
    if id(registry) in _registered:
        return
    for metric in ALL_METRICS:
        registry.register(metric)
    _registered.add(id(registry))


def register_state_collectors(app: Flask, *collectors: StateCollector) -> None:
    """Have ``app``'s ``/metrics`` add the families each collector yields."""
    app.extensions["metrics.state_collectors"] = collectors


class _StateCollector(Collector):
    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self) -> Iterable[Metric]:
        for collect in self.app.extensions.get("metrics.state_collectors", ()):
            yield from collect(self.app)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _endpoint() -> str:
    return request.url_rule.endpoint if request.url_rule else "unmatched"


def _method() -> str:
    # gunicorn accepts any token as a method: keep the label's values bounded.
    return request.method if request.method in _METHODS else "other"


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()
    HTTP_IN_FLIGHT.inc()


# The children of both request families by their labels (bounded: methods,
# endpoints and status codes are), so a request does not resolve its labels
# through prometheus-client's locked lookup each time.
_duration_children: dict[tuple[str, str], Histogram] = {}
_request_children: dict[tuple[str, str, int], Counter] = {}


def _observe(response: Response) -> Response:
    if "metrics_started" in g:
        endpoint = _endpoint()
        method = _method()
        seconds = time.perf_counter() - g.metrics_started
        duration = _duration_children.get((method, endpoint))
        if duration is None:
            duration = _duration_children[method, endpoint] = HTTP_DURATION.labels(method, endpoint)
        duration.observe(seconds)
        status = response.status_code
        requests = _request_children.get((method, endpoint, status))
        if requests is None:
            requests = _request_children[method, endpoint, status] = HTTP_REQUESTS.labels(
                method, endpoint, str(status)
            )
        requests.inc()
        log_request(response, seconds)
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
    """Register the metrics; count, time and log (:func:`~service.logging.log_request`)
    every request, timed once."""
    register_metrics()
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.teardown_request(_leave)
