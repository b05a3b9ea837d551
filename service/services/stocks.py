"""Stocks: market prices, found through the vendor's pages and kept in Redis.

Every vendor page the service sees is remembered: each item's quote (price,
the vendor's ``lastUpdated``, when we fetched it) and the symbol → page-token
map, so a later price look-up fetches exactly one page instead of walking the
catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from redis.exceptions import RedisError

from service import cache
from service.config import current_settings
from service.errors import UnknownSymbol
from service.extensions import redis_store
from service.metrics import CACHE_REQUESTS
from service.models.base import utcnow
from service.vendor.client import StockPage, VendorStock, parse_vendor_time, vendor_client

TOKEN_MAP_KEY = "stocks:tokens"
FIRST_PAGE = ""  # the token-map value of symbols on the first page (no token)
# Quotes stay readable for a day (portfolios show them with their age); only
# those inside the current repricing cycle are good enough to trade on.
QUOTE_RETENTION_SECONDS = 86_400
MAX_WALK_PAGES = 500


def quote_key(symbol: str) -> str:
    return f"stocks:quote:{symbol}"


@dataclass(frozen=True)
class Quote:
    """A vendor price and how old it is."""

    symbol: str
    price: Decimal
    last_updated: datetime  # when the vendor last repriced the item
    fetched_at: datetime  # when we read it from the vendor

    def fresh_for_trading(self, now: datetime, cycle_seconds: int) -> bool:
        """True while the vendor cannot have repriced the item since we read it:
        the vendor reprices each item once per cycle."""
        cycle = timedelta(seconds=cycle_seconds)
        return now < self.last_updated + cycle and now < self.fetched_at + cycle

    def to_json(self) -> dict[str, str]:
        return {
            "symbol": self.symbol,
            "price": str(self.price),
            "lastUpdated": self.last_updated.isoformat(),
            "fetchedAt": self.fetched_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quote:
        return cls(
            symbol=data["symbol"],
            price=Decimal(data["price"]),
            last_updated=parse_vendor_time(data["lastUpdated"]),
            fetched_at=parse_vendor_time(data["fetchedAt"]),
        )

    @classmethod
    def of(cls, item: VendorStock, fetched_at: datetime) -> Quote:
        return cls(item.symbol, item.price, item.last_updated, fetched_at)


def remember_page(page: StockPage, token: str | None) -> None:
    """Store the page's quotes and symbol → token entries (one round trip, fail-open)."""
    if not page.items:
        return
    now = utcnow()
    try:
        pipe = redis_store.client.pipeline(transaction=False)
        for item in page.items:
            pipe.set(
                quote_key(item.symbol),
                cache.dumps(Quote.of(item, now).to_json()),
                ex=QUOTE_RETENTION_SECONDS,
            )
        pipe.hset(TOKEN_MAP_KEY, mapping={item.symbol: token or FIRST_PAGE for item in page.items})
        pipe.execute()
    except RedisError as exc:
        cache.record_failure("cache", exc)


def fetch_page(token: str | None) -> StockPage:
    """One vendor page, remembered on the way.

    :raises VendorError: as :meth:`VendorClient.list_stocks`.
    """
    page = vendor_client().list_stocks(token)
    remember_page(page, token)
    return page


def known_token(symbol: str) -> str | None:
    """The token of the page that listed ``symbol`` last time (``""`` for the
    first page), or ``None`` when the map does not know it."""
    try:
        raw = redis_store.client.hget(TOKEN_MAP_KEY, symbol)
    except RedisError as exc:
        cache.record_failure("cache", exc)
        return None
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def cached_quotes(symbols: Iterable[str]) -> dict[str, Quote]:
    """Cached quotes of any age (no vendor call); missing symbols are absent."""
    wanted = list(dict.fromkeys(symbols))
    found = cache.get_many_json([quote_key(symbol) for symbol in wanted])
    return {data["symbol"]: Quote.from_json(data) for data in found.values()}


def market_price(symbol: str) -> Quote:
    """A price good enough to trade ``symbol`` on.

    A cached quote from the current repricing cycle; otherwise exactly one
    vendor page found through the symbol → token map; only when the map does
    not know the symbol (or its page no longer lists it) the catalogue is
    walked, at most ``MAX_WALK_PAGES`` pages, filling the map on the way.

    :raises UnknownSymbol: the vendor does not list ``symbol``;
    :raises VendorError: the vendor failed (``CircuitOpen`` included).
    """
    settings = current_settings()
    cached = cached_quotes([symbol]).get(symbol)
    if cached and cached.fresh_for_trading(utcnow(), settings.cache_ttl_seconds):
        CACHE_REQUESTS.labels("price", "hit").inc()
        return cached
    CACHE_REQUESTS.labels("price", "miss").inc()
    token = known_token(symbol)
    if token is not None:
        found = _find(fetch_page(token or None), symbol)
        if found:
            return found
    return _walk_for(symbol)


def _find(page: StockPage, symbol: str) -> Quote | None:
    now = utcnow()
    for item in page.items:
        if item.symbol == symbol:
            return Quote.of(item, now)
    return None


def _walk_for(symbol: str) -> Quote:
    token: str | None = None
    for _ in range(MAX_WALK_PAGES):
        page = fetch_page(token)
        found = _find(page, symbol)
        if found:
            return found
        if page.next_token is None:
            break
        token = page.next_token
    raise UnknownSymbol(f"{symbol} is not listed by the market vendor.", details={"symbol": symbol})
