"""Token refresh: rebuild the symbol → page-token map and the catalogue.

The vendor has no single-stock endpoint, so the buy path finds a stock's
price through the page that lists it (``stocks:tokens``, read by
:func:`service.services.stocks.market_price`), and search matches on the
catalogue (``stocks:catalogue``). This job walks every vendor page to rebuild
both; the service also fills them lazily, so it works before the first run.

One run at a time across pods: a Redis lock with expiry, extended after every
page. Each run leaves its summary in Redis, which the web pods export as
``trading_tokens_refresh_*`` gauges (the job's own pod is never scraped).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.exceptions import RedisError
from redis.lock import Lock
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from service import cache
from service.errors import AlreadyRunning
from service.extensions import redis_store
from service.models.base import utcnow
from service.services.stocks import (
    CATALOGUE_KEY,
    CATALOGUE_RETENTION_SECONDS,
    FIRST_PAGE,
    MAX_WALK_PAGES,
    TOKEN_MAP_KEY,
    catalogue_data,
    fetch_page,
)
from service.vendorapi.client import StockPage, VendorStock
from service.vendorapi.errors import VendorError, VendorRejected

log = logging.getLogger(__name__)

LOCK_KEY = "stocks:tokens:refresh:lock"
LAST_RUN_KEY = "stocks:tokens:refresh:last_run"
LAST_SUCCESS_KEY = "stocks:tokens:refresh:last_success"
# The lock outlives a stuck run by this much; a live run extends it per page.
LOCK_SECONDS = 300
PAGE_ATTEMPTS = 4
Wait = Callable[[RetryCallState], float]
"""Seconds to wait before the next attempt at a page (a tenacity wait)."""
PAGE_RETRY_WAIT: Wait = wait_exponential_jitter(initial=1, max=30, jitter=1)
MAX_SYMBOL_LENGTH = 32

Progress = Callable[[int, int], None]
"""Called after every page with the pages and symbols done so far."""


@dataclass(frozen=True)
class RefreshSummary:
    """What one run did; ``error`` says why it could not finish."""

    ok: bool
    pages: int
    symbols: int
    skipped: int
    seconds: float
    finished_at: datetime = field(default_factory=utcnow)
    error: str | None = None

    def line(self) -> str:
        """The one-line summary the job prints."""
        counts = (
            f"{self.pages} pages, {self.symbols} symbols, {self.skipped} skipped, "
            f"{self.seconds:.1f} s"
        )
        return (
            f"tokens refresh done: {counts}"
            if self.ok
            else (f"tokens refresh failed: {counts}; {self.error}")
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["finished_at"] = self.finished_at.isoformat()
        return data


def refresh_tokens(progress: Progress | None = None, wait: Wait | None = None) -> RefreshSummary:
    """Walk every vendor page (following ``nextToken`` to the end); then, in one
    Redis transaction, replace the token map and the catalogue.

    A page fetch is retried ``PAGE_ATTEMPTS`` times, ``wait`` apart (default
    ``PAGE_RETRY_WAIT``); a stock that cannot be stored is logged and skipped.
    A run that cannot finish keeps the map entries of the pages it read and
    leaves the previous catalogue in place. The summary is recorded in Redis.

    :raises AlreadyRunning: another run holds the lock (nothing was done).
    """
    started = time.monotonic()
    lock = redis_store.client.lock(LOCK_KEY, timeout=LOCK_SECONDS, blocking=False)
    try:
        acquired = lock.acquire()
    except RedisError as exc:
        cache.record_failure("tokens", exc)
        return RefreshSummary(False, 0, 0, 0, time.monotonic() - started, error=f"Redis: {exc}")
    if not acquired:
        raise AlreadyRunning("Another tokens refresh is running.")
    walk = _Walk(lock, progress, wait or PAGE_RETRY_WAIT)
    try:
        error = walk.run() or _store(walk.found)
    finally:
        cache.release(lock, "tokens")
    summary = RefreshSummary(
        ok=error is None,
        pages=walk.pages,
        symbols=len(walk.found),
        skipped=walk.skipped,
        seconds=round(time.monotonic() - started, 3),
        error=error,
    )
    _record(summary)
    return summary


class _Walk:
    """The pages read so far and the stocks found on them, with their tokens."""

    def __init__(self, lock: Lock, progress: Progress | None, wait: Wait) -> None:
        self.lock = lock
        self.progress = progress
        self.retrying = Retrying(
            retry=retry_if_exception(
                lambda exc: isinstance(exc, VendorError) and not isinstance(exc, VendorRejected)
            ),
            stop=stop_after_attempt(PAGE_ATTEMPTS),
            wait=wait,
            reraise=True,
        )
        self.found: dict[str, tuple[VendorStock, str]] = {}
        self.pages = 0
        self.skipped = 0

    def run(self) -> str | None:
        """Read every page; ``None`` when the last one was reached, else why not."""
        token: str | None = None
        for _ in range(MAX_WALK_PAGES):
            try:
                page = self.retrying(fetch_page, token)
            except VendorError as exc:
                return f"page {self.pages + 1}: {exc.code}: {exc.message}"
            self.pages += 1
            self._take(page, token or FIRST_PAGE)
            if self.progress:
                self.progress(self.pages, len(self.found))
            try:
                self.lock.reacquire()
            except RedisError as exc:
                return f"lost the run lock ({exc!r})"
            if page.next_token is None:
                return None
            token = page.next_token
        return f"no last page after {MAX_WALK_PAGES} pages"

    def _take(self, page: StockPage, token: str) -> None:
        for unread in page.skipped:
            self._skip(unread.symbol, unread.reason)
        for stock in page.items:
            problem = _unstorable(stock)
            if problem:
                self._skip(stock.symbol, problem)
            else:
                self.found[stock.symbol] = (stock, token)

    def _skip(self, symbol: str | None, reason: str) -> None:
        self.skipped += 1
        log.warning("stock skipped", extra={"symbol": symbol, "reason": reason})


def _unstorable(stock: VendorStock) -> str | None:
    """Why ``stock`` cannot go into the map, or ``None`` when it can."""
    symbol = stock.symbol
    if not symbol or symbol != symbol.strip() or any(c.isspace() for c in symbol):
        return "blank symbol or symbol with spaces"
    if len(symbol) > MAX_SYMBOL_LENGTH:
        return f"symbol longer than {MAX_SYMBOL_LENGTH} characters"
    return None


def _store(found: dict[str, tuple[VendorStock, str]]) -> str | None:
    """Replace the map and the catalogue atomically; ``None``, or what failed."""
    if not found:
        return "the vendor listed no stocks"
    try:
        pipe = redis_store.client.pipeline(transaction=True)
        pipe.delete(TOKEN_MAP_KEY)
        pipe.hset(TOKEN_MAP_KEY, mapping={symbol: token for symbol, (_, token) in found.items()})
        catalogue = catalogue_data(stock for stock, _ in found.values())
        pipe.set(CATALOGUE_KEY, cache.dumps(catalogue), ex=CATALOGUE_RETENTION_SECONDS)
        pipe.execute()
    except RedisError as exc:
        cache.record_failure("tokens", exc)
        return f"Redis: {exc}"
    return None


def _record(summary: RefreshSummary) -> None:
    record = cache.dumps(summary.to_json())
    try:
        pipe = redis_store.client.pipeline(transaction=True)
        pipe.set(LAST_RUN_KEY, record)
        if summary.ok:
            pipe.set(LAST_SUCCESS_KEY, record)
        pipe.execute()
    except RedisError as exc:
        cache.record_failure("tokens", exc)


def refresh_state(app: Flask) -> Iterator[Metric]:
    """The last runs' records as ``trading_tokens_refresh_*`` gauges.

    The families are always declared; they carry a sample only once a run
    has been recorded (and not when Redis cannot be read), so alerts can
    tell "never ran" (absent) from "ran long ago".
    """
    success = GaugeMetricFamily(
        "trading_tokens_refresh_last_success_timestamp_seconds",
        "When the last successful tokens refresh finished (Unix time).",
    )
    duration = GaugeMetricFamily(
        "trading_tokens_refresh_last_duration_seconds", "How long the last tokens refresh ran."
    )
    symbols = GaugeMetricFamily(
        "trading_tokens_refresh_symbols", "Symbols the last tokens refresh mapped."
    )
    failed = GaugeMetricFamily(
        "trading_tokens_refresh_last_failed",
        "1 when the last tokens refresh could not finish, else 0.",
    )
    try:
        raws = app.extensions["redis"].mget([LAST_RUN_KEY, LAST_SUCCESS_KEY])
    except RedisError as exc:
        cache.record_failure("metrics", exc)
        raws = [None, None]
    last_run, last_success = (json.loads(raw) if raw else None for raw in raws)
    if last_success:
        success.add_metric([], datetime.fromisoformat(last_success["finished_at"]).timestamp())
    if last_run:
        duration.add_metric([], last_run["seconds"])
        symbols.add_metric([], last_run["symbols"])
        failed.add_metric([], 0 if last_run["ok"] else 1)
    yield from (success, duration, symbols, failed)
