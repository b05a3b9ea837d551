"""Token refresh: rebuild the symbol → page-token map and the catalogue.

The vendor has no single-stock endpoint, so the buy path finds a stock's
price through the page that lists it (the symbol → page-token map, read by
:func:`service.services.stocks.market_price`), and search matches on the
catalogue. This job walks every vendor page to rebuild both (through
:mod:`service.marketdata`, which owns them); the service also fills them
lazily, so it works before the first run.

One run at a time across pods: a Redis lock with expiry, extended after every
page. Each run leaves its summary in Redis, which the web pods export as
``trading_tokens_refresh_*`` gauges (the job's own pod is never scraped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from redis.lock import Lock
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from service import cache
from service.cache import redis_guard
from service.errors import AlreadyRunning
from service.marketdata import clock, fill, store, walk
from service.marketdata.codec import CachedPage, Catalogue
from service.models.base import utcnow
from service.vendorapi.client import StockPage, VendorStock
from service.vendorapi.errors import VendorError, VendorRejected

log = logging.getLogger(__name__)

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
    lock = store.refresh_lock(LOCK_SECONDS)
    acquired = False
    with redis_guard("tokens") as guard:
        acquired = bool(lock.acquire())
    if guard.failed:
        seconds = time.monotonic() - started
        return RefreshSummary(False, 0, 0, 0, seconds, error="Redis: the run lock was not taken")
    if not acquired:
        raise AlreadyRunning("Another tokens refresh is running.")
    run = _Run(lock, progress, wait or PAGE_RETRY_WAIT)
    try:
        error = run.walk() or _store(run.found)
    finally:
        cache.release(lock, "tokens")
    summary = RefreshSummary(
        ok=error is None,
        pages=run.pages,
        symbols=len(run.found),
        skipped=run.skipped,
        seconds=round(time.monotonic() - started, 3),
        error=error,
    )
    store.record_refresh(summary.to_json(), summary.ok)
    return summary


class _Run:
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

    def walk(self) -> str | None:
        """Read every page; ``None`` when the last one was reached, else why not."""
        try:
            for token, cached in walk.pages(self._fetch):
                self.pages += 1
                self._take(cached.page, token or store.FIRST_PAGE)
                if self.progress:
                    self.progress(self.pages, len(self.found))
                with redis_guard("tokens") as guard:
                    self.lock.reacquire()
                if guard.error is not None:
                    return f"lost the run lock ({guard.error!r})"
                if cached.page.next_token is None:
                    return None
        except VendorError as exc:
            return f"page {self.pages + 1}: {exc.code}: {exc.message}"
        return f"no last page after {walk.MAX_WALK_PAGES} pages"

    def _fetch(self, token: str | None) -> CachedPage:
        return self.retrying(fill.fetch, token)

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
    catalogue = Catalogue.of((stock for stock, _ in found.values()), clock.now())
    tokens = {symbol: token for symbol, (_, token) in found.items()}
    if not store.replace_map_and_catalogue(tokens, catalogue):
        return "Redis: the map and the catalogue could not be stored"
    return None


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
    last_run, last_success = store.refresh_records(app.extensions["redis"])
    if last_success:
        success.add_metric([], datetime.fromisoformat(last_success["finished_at"]).timestamp())
    if last_run:
        duration.add_metric([], last_run["seconds"])
        symbols.add_metric([], last_run["symbols"])
        failed.add_metric([], 0 if last_run["ok"] else 1)
    yield from (success, duration, symbols, failed)
