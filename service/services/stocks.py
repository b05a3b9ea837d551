"""Stocks: the listing, search, and market prices, kept in Redis.

Every vendor page the service sees is remembered (:func:`remember_page`): the
page itself (for the listing), each item's quote (price, the vendor's
``lastUpdated``, when we fetched it) and the symbol → page-token map, so that a
later price look-up fetches exactly one page instead of walking the catalogue.

The listing (:func:`list_stocks`) is assembled from cached vendor pages. A page
is fresh for ``CACHE_TTL_SECONDS`` after it was fetched and kept a day longer
as the last good copy, served as ``stale`` when the vendor fails. Concurrent
misses for one page make one vendor call: the first caller takes a lock in
Redis (with expiry) and fetches, the others poll the cache until it is filled.
When Redis fails, everything goes straight to the vendor (fail open).

Client tokens (``nextToken``) are base64url of a small JSON object, opaque to
clients and stable (the same position always gives the same token):

- browsing, ``{"o": offset, "p": vendor token or null}``: the position
  ``offset`` inside the vendor page that ``p`` names (null: the first page);
- searching, ``{"o": offset, "q": fingerprint of the search}``: the position in
  the ranked matches of that search, so a token cannot drift into another one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from flask import Flask, after_this_request, current_app, has_request_context
from flask import Response as FlaskResponse
from redis.exceptions import RedisError

from service import cache
from service.config import current_settings
from service.errors import InvalidInput, ServiceUnavailable
from service.extensions import redis_store
from service.metrics import CACHE_REQUESTS
from service.models.base import utcnow
from service.vendorapi.client import (
    LIST_ATTEMPTS,
    StockPage,
    VendorStock,
    vendor_client,
)
from service.vendorapi.errors import UnknownSymbol, VendorBadResponse, VendorError, VendorRejected
from service.vendorapi.wire import parse_vendor_time

log = logging.getLogger(__name__)

TOKEN_MAP_KEY = "stocks:tokens"
CATALOGUE_KEY = "stocks:catalogue"
FIRST_PAGE = ""  # the token-map value of symbols on the first page (no token)
# Quotes and pages stay readable for a day: portfolios show quotes with their
# age, and the listing serves the last good page when the vendor fails. Only
# what is younger than one repricing cycle counts as fresh.
QUOTE_RETENTION_SECONDS = 86_400
PAGE_RETENTION_SECONDS = 86_400
# Kept three refresh cycles, so a late or failed daily refresh never leaves
# search (or the unknown-symbol check) without a catalogue.
CATALOGUE_RETENTION_SECONDS = 3 * 86_400
MAX_WALK_PAGES = 500

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_SEARCH_LENGTH = 100
MAX_OFFSET = 1_000_000
MAX_VENDOR_TOKEN_LENGTH = 512
# A pre-cached next page is claimed for a minute, so that the pods following
# one client's pages fetch it once, not once each.
PREFETCH_CLAIM_SECONDS = 60
# A process that finds another caller's claim leaves the page alone this long
# before asking Redis again (it cannot see how long the claim still stands).
CLAIM_SEEN_SECONDS = 5
SETTLED_MEMO_SIZE = 10_000
FILL_POLL_SECONDS = 0.02
UNAVAILABLE_RETRY_SECONDS = 5

HIT, MISS, STALE = "hit", "miss", "stale"
_WORST_FIRST = (STALE, MISS, HIT)


def quote_key(symbol: str) -> str:
    return f"stocks:quote:{symbol}"


def page_key(token: str | None) -> str:
    """The cache key of the vendor page ``token`` names (``None``: the first)."""
    digest = hashlib.sha256((token or FIRST_PAGE).encode()).hexdigest()[:32]
    return f"stocks:page:{digest}"


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


@dataclass(frozen=True)
class CachedPage:
    """A vendor page and when we fetched it."""

    page: StockPage
    fetched_at: datetime

    def fresh(self, now: datetime, ttl_seconds: int) -> bool:
        return now - self.fetched_at < timedelta(seconds=ttl_seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [_stock_json(item) for item in self.page.items],
            "nextToken": self.page.next_token,
            "fetchedAt": self.fetched_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedPage:
        items = tuple(_stock_from_json(item) for item in data["items"])
        page = StockPage(items=items, next_token=data["nextToken"])
        return cls(page, parse_vendor_time(data["fetchedAt"]))


class CatalogueEntry(NamedTuple):
    """What search matches on: the catalogue without prices."""

    symbol: str
    name: str
    sector: str


@dataclass(frozen=True)
class ListingMeta:
    """Where a listing came from: ``cache`` is hit, miss or stale; ``as_of`` is
    when its oldest vendor page was fetched, ``age_seconds`` how long ago."""

    cache: str
    as_of: datetime
    age_seconds: int


@dataclass(frozen=True)
class StockListing:
    """One page of ``GET /stocks``; ``next_token`` is ``None`` on the last page."""

    items: tuple[VendorStock, ...]
    next_token: str | None
    meta: ListingMeta


def _stock_json(item: VendorStock) -> dict[str, str]:
    return {
        "symbol": item.symbol,
        "name": item.name,
        "price": str(item.price),
        "sector": item.sector,
        "change": str(item.change),
        "lastUpdated": item.last_updated.isoformat(),
    }


def _stock_from_json(data: dict[str, str]) -> VendorStock:
    return VendorStock(
        symbol=data["symbol"],
        name=data["name"],
        price=Decimal(data["price"]),
        sector=data["sector"],
        change=Decimal(data["change"]),
        last_updated=parse_vendor_time(data["lastUpdated"]),
    )


# --- remembering what the vendor says ---------------------------------------


def remember_page(page: StockPage, token: str | None) -> datetime:
    """Store the page, its quotes and its symbol → token entries (one round
    trip, fail-open); returns the fetch time recorded with them."""
    now = utcnow()
    try:
        pipe = redis_store.client.pipeline(transaction=False)
        pipe.set(
            page_key(token), cache.dumps(CachedPage(page, now).to_json()), ex=PAGE_RETENTION_SECONDS
        )
        for item in page.items:
            pipe.set(
                quote_key(item.symbol),
                cache.dumps(Quote.of(item, now).to_json()),
                ex=QUOTE_RETENTION_SECONDS,
            )
        if page.items:
            pipe.hset(
                TOKEN_MAP_KEY, mapping={item.symbol: token or FIRST_PAGE for item in page.items}
            )
        pipe.execute()
    except RedisError as exc:
        cache.record_failure("cache", exc)
    return now


def fetch_page(token: str | None) -> StockPage:
    """One vendor page, remembered on the way.

    :raises VendorError: as :meth:`VendorClient.list_stocks`.
    """
    return _fetch(token).page


def _fetch(token: str | None) -> CachedPage:
    page = vendor_client().list_stocks(token)
    return CachedPage(page, remember_page(page, token))


def known_token(symbol: str) -> str | None:
    """The token of the page that listed ``symbol`` last time (``""`` for the
    first page), or ``None`` when the map does not know it."""
    return known_tokens([symbol]).get(symbol)


def known_tokens(symbols: Sequence[str]) -> dict[str, str]:
    """The page tokens the map knows for ``symbols`` (one round trip, fail-open)."""
    if not symbols:
        return {}
    try:
        raws = redis_store.client.hmget(TOKEN_MAP_KEY, list(symbols))
    except RedisError as exc:
        cache.record_failure("cache", exc)
        return {}
    return {
        symbol: raw.decode() if isinstance(raw, bytes) else str(raw)
        for symbol, raw in zip(symbols, raws, strict=True)
        if raw is not None
    }


def catalogue_data(stocks: Iterable[VendorStock]) -> dict[str, Any]:
    """The stored form (JSON, at ``CATALOGUE_KEY``) of the catalogue that
    search reads: symbol, name and sector of every stock, in vendor order."""
    entries = [[stock.symbol, stock.name, stock.sector] for stock in stocks]
    return {"builtAt": utcnow().isoformat(), "stocks": entries}


# --- market prices (the buy path) -------------------------------------------


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
    :raises VendorBadResponse: the vendor lists it but its item is unreadable;
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
        try:
            found = _find(fetch_page(token or None), symbol)
        except VendorRejected as exc:
            # A token the vendor no longer accepts: the map is stale, walk.
            log.info("stale page token, walking", extra={"symbol": symbol, "error": exc.message})
            found = None
        if found:
            return found
    return _walk_for(symbol)


def _find(page: StockPage, symbol: str) -> Quote | None:
    now = utcnow()
    for item in page.items:
        if item.symbol == symbol:
            return Quote.of(item, now)
    if any(skipped.symbol == symbol for skipped in page.skipped):
        raise VendorBadResponse(f"The vendor's quote for {symbol} cannot be read.")
    return None


def _walk_for(symbol: str) -> Quote:
    stored = cache.get_json(CATALOGUE_KEY)
    if stored is not None and all(entry[0] != symbol for entry in stored["stocks"]):
        # The catalogue (tokens refresh, or a search's walk) does not list it:
        # no walk, so a stream of made-up symbols cannot cost the vendor a
        # catalogue walk each. A stock listed since is known after the next refresh.
        raise UnknownSymbol(
            f"{symbol} is not listed by the market vendor.", details={"symbol": symbol}
        )
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


# --- the listing -------------------------------------------------------------


def list_stocks(
    search: str | None = None, next_token: str | None = None, limit: int = DEFAULT_LIMIT
) -> StockListing:
    """One page of stocks with current prices, at most ``limit`` items.

    Without ``search``: the vendor's catalogue in its own order. With
    ``search``: stocks whose symbol or name contains it (case-insensitive),
    across the whole catalogue, exact and leading symbol matches first.

    :raises InvalidInput: ``next_token`` was not issued for this listing;
    :raises ServiceUnavailable: the vendor failed and no copy is cached (with
        ``retry_after``).
    """
    term = (search or "").strip()
    if term:
        return _search(term, _search_offset(next_token, term), limit)
    return _browse(_browse_position(next_token), limit)


class _Loads:
    """The vendor pages one listing was assembled from, to describe it."""

    def __init__(self) -> None:
        self.results: list[str] = []
        self.fetched: list[datetime] = []

    def add(self, cached: CachedPage, result: str) -> CachedPage:
        self.results.append(result)
        self.fetched.append(cached.fetched_at)
        return cached

    def meta(self, default_as_of: datetime) -> ListingMeta:
        now = utcnow()
        as_of = min(self.fetched, default=default_as_of)
        result = next((r for r in _WORST_FIRST if r in self.results), HIT)
        return ListingMeta(result, as_of, max(0, int((now - as_of).total_seconds())))


def _browse(position: tuple[str | None, int], limit: int) -> StockListing:
    token, offset = position
    loads = _Loads()
    items: list[VendorStock] = []
    following: tuple[str | None, int] | None = (token, offset)
    last_next: str | None = None
    from_client = True
    for _ in range(MAX_WALK_PAGES):
        page = loads.add(*_load_page(token, from_client=from_client)).page
        from_client = False
        taken = page.items[offset : offset + limit - len(items)]
        items.extend(taken)
        end = offset + len(taken)
        last_next = page.next_token
        if end < len(page.items):
            following = (token, end)
            break
        if page.next_token is None:
            following = None
            break
        token, offset = page.next_token, 0
        following = (token, 0)
        if len(items) >= limit:
            break
    if last_next is not None:
        _pre_cache_after_response(last_next)
    next_token = None if following is None else _encode({"o": following[1], "p": following[0]})
    return StockListing(tuple(items), next_token, loads.meta(utcnow()))


def _search(term: str, offset: int, limit: int) -> StockListing:
    loads = _Loads()
    catalogue, built_at, walked = _catalogue(loads)
    needle = term.casefold()
    ranked = sorted(
        (rank, entry.symbol) for entry in catalogue if (rank := _rank(needle, entry)) is not None
    )
    chosen = [symbol for _, symbol in ranked[offset : offset + limit]]
    found = _items_by_symbol(chosen, walked, loads)
    if walked is None and len(found) < len(chosen):
        # The map lost a symbol or the vendor moved or dropped it: walk, and
        # store what the walk saw, so the next search does not walk again.
        walked = _walk(loads)
        _store_catalogue(walked)
        found = _items_by_symbol(chosen, walked, loads)
    items = tuple(found[symbol] for symbol in chosen if symbol in found)
    following = offset + limit if offset + limit < len(ranked) else None
    next_token = None if following is None else _encode({"o": following, "q": _fingerprint(term)})
    return StockListing(items, next_token, loads.meta(built_at))


def _rank(needle: str, entry: CatalogueEntry) -> int | None:
    """0 exact symbol, 1 symbol prefix, 2 inside the symbol, 3 inside the name."""
    symbol = entry.symbol.casefold()
    if symbol == needle:
        return 0
    if symbol.startswith(needle):
        return 1
    if needle in symbol:
        return 2
    if needle in entry.name.casefold():
        return 3
    return None


def _catalogue(
    loads: _Loads,
) -> tuple[list[CatalogueEntry], datetime, dict[str, VendorStock] | None]:
    """The catalogue, its age, and the items walked to build it (``None`` when
    it came from Redis: from the refresh job or an earlier walk)."""
    stored = cache.get_json(CATALOGUE_KEY)
    if stored is not None:
        entries = [CatalogueEntry(*entry) for entry in stored["stocks"]]
        return entries, parse_vendor_time(stored["builtAt"]), None
    walked = _walk(loads)
    _store_catalogue(walked)
    entries = [CatalogueEntry(item.symbol, item.name, item.sector) for item in walked.values()]
    return entries, utcnow(), walked


def _store_catalogue(walked: dict[str, VendorStock]) -> None:
    cache.set_many_json(
        {CATALOGUE_KEY: catalogue_data(walked.values())}, CATALOGUE_RETENTION_SECONDS
    )


def _walk(loads: _Loads) -> dict[str, VendorStock]:
    """Every item of the catalogue through the page cache, in vendor order."""
    found: dict[str, VendorStock] = {}
    token: str | None = None
    for _ in range(MAX_WALK_PAGES):
        page = loads.add(*_load_page(token, from_client=False)).page
        found.update((item.symbol, item) for item in page.items)
        if page.next_token is None:
            return found
        token = page.next_token
    log.warning("catalogue walk stopped after %d pages", MAX_WALK_PAGES)
    return found


def _items_by_symbol(
    symbols: Sequence[str], walked: dict[str, VendorStock] | None, loads: _Loads
) -> dict[str, VendorStock]:
    """The current items of ``symbols``: from the walk, else from the pages the
    token map names (each loaded once, through the page cache)."""
    if walked is not None:
        return {symbol: walked[symbol] for symbol in symbols if symbol in walked}
    tokens = known_tokens(symbols)
    found: dict[str, VendorStock] = {}
    for token in dict.fromkeys(tokens[symbol] for symbol in symbols if symbol in tokens):
        page = loads.add(*_load_page(token or None, from_client=False)).page
        found.update((item.symbol, item) for item in page.items if item.symbol in tokens)
    return found


# --- the page cache -----------------------------------------------------------


def _load_page(token: str | None, *, from_client: bool) -> tuple[CachedPage, str]:
    """The vendor page ``token`` names and how it was got (hit, miss, stale).

    Fresh from the cache; else fetched under the page's lock (other callers
    wait for the cache to fill); else, when the vendor fails, the last good
    copy. ``from_client``: the token came from a client's ``nextToken``.

    :raises InvalidInput: the vendor refused a client's token;
    :raises ServiceUnavailable: the vendor failed and no copy is cached.
    """
    cached, readable = _read_page(token)
    loaded, result = _cached_or_filled(token, cached, readable, from_client=from_client)
    CACHE_REQUESTS.labels("page", result if readable else "error").inc()
    return loaded, result


def _cached_or_filled(
    token: str | None, cached: CachedPage | None, readable: bool, *, from_client: bool
) -> tuple[CachedPage, str]:
    ttl = current_settings().cache_ttl_seconds
    if cached is not None and cached.fresh(utcnow(), ttl):
        return cached, HIT
    with _fill_lock(token) as owner:
        if owner:
            again = _read_page(token)[0] if readable else None
            if again is not None and again.fresh(utcnow(), ttl):
                return again, HIT  # filled between our read and our lock
            return _fetch_or_stale(token, cached, from_client=from_client)
        filled, redis_ok = _await_fill(token, ttl)
    if filled is not None:
        return filled, HIT
    if not redis_ok:  # Redis failed while we waited: fetch ourselves (fail open)
        return _fetch_or_stale(token, cached, from_client=from_client)
    return _stale_or_unavailable(cached, None), STALE  # the fetch we waited for failed


def _read_page(token: str | None) -> tuple[CachedPage | None, bool]:
    """The cached page (any age) and whether Redis could be read at all."""
    try:
        raw = redis_store.client.get(page_key(token))
    except RedisError as exc:
        cache.record_failure("cache", exc)
        return None, False
    return (None if raw is None else CachedPage.from_json(json.loads(raw))), True


def _fetch_or_stale(
    token: str | None, stale: CachedPage | None, *, from_client: bool
) -> tuple[CachedPage, str]:
    try:
        return _fetch(token), MISS
    except VendorRejected as exc:
        if from_client and token is not None and exc.vendor_status == 400:
            raise _bad_token("This token is no longer valid; start again without it.") from exc
        return _stale_or_unavailable(stale, exc), STALE
    except VendorError as exc:
        return _stale_or_unavailable(stale, exc), STALE


def _stale_or_unavailable(stale: CachedPage | None, cause: VendorError | None) -> CachedPage:
    """The last good copy, when there is one.

    :raises ServiceUnavailable: there is none.
    """
    code = cause.code if cause else "vendor_fetch_failed"
    if stale is not None:
        log.warning("vendor failed, serving the last good page", extra={"vendor_error": code})
        return stale
    retry_after = (cause.retry_after if cause else None) or UNAVAILABLE_RETRY_SECONDS
    raise ServiceUnavailable(
        "The market vendor is unavailable and no copy of these stocks is cached.",
        details={"reason": code},
        retry_after=retry_after,
    ) from cause


def _fill_seconds() -> float:
    """How long one page fetch may take: the single-flight lock's expiry and
    the longest a waiter polls (every attempt may wait out both timeouts, plus
    the backoff between attempts)."""
    return float(current_settings().vendor_timeout_seconds) * 2 * LIST_ATTEMPTS + 5


def _lock_key(token: str | None) -> str:
    return page_key(token) + ":lock"


@contextmanager
def _fill_lock(token: str | None) -> Iterator[bool]:
    """Hold the page's single-flight lock for the block; yields whether this
    caller should fetch: it holds the lock, or Redis cannot arbitrate."""
    lock = redis_store.client.lock(_lock_key(token), timeout=_fill_seconds(), blocking=False)
    try:
        held = bool(lock.acquire())
        owner = held
    except RedisError as exc:
        cache.record_failure("cache", exc)
        held, owner = False, True  # fail open: fetch without the lock
    try:
        yield owner
    finally:
        if held:
            cache.release(lock)


def _await_fill(token: str | None, ttl: int) -> tuple[CachedPage | None, bool]:
    """Poll while another caller fetches the page: the fresh copy, or ``None``
    when its fetch ended (or took too long) without one; and ``False`` when
    Redis failed meanwhile (the wait tells nothing then)."""
    deadline = time.monotonic() + _fill_seconds()
    while time.monotonic() < deadline:
        time.sleep(FILL_POLL_SECONDS)
        try:
            pipe = redis_store.client.pipeline(transaction=False)
            pipe.get(page_key(token))
            pipe.exists(_lock_key(token))
            raw, locked = pipe.execute()
        except RedisError as exc:
            cache.record_failure("cache", exc)
            return None, False
        if raw is not None:
            cached = CachedPage.from_json(json.loads(raw))
            if cached.fresh(utcnow(), ttl):
                return cached, True
        if not locked:
            return None, True
    return None, True


def _pre_cache_after_response(token: str) -> None:
    """Fetch the page ``token`` names once the response has been sent (WSGI
    close), so a client following ``nextToken`` finds it cached.

    Nothing is attached — no Redis command at all — while this process knows
    the page needs no pre-caching (:func:`_settled_until`)."""
    if not has_request_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if _settled(app).get(token, 0.0) > time.monotonic():
        return

    def pre_cache() -> None:
        with app.app_context():
            _pre_cache(token)

    @after_this_request
    def attach(response: FlaskResponse) -> FlaskResponse:
        response.call_on_close(pre_cache)
        return response


def _pre_cache(token: str) -> None:
    # Claim before reading: while the claim stands this costs one small Redis
    # command, not a read and parse of the whole page; and the process then
    # remembers the page as settled, so its next requests cost nothing.
    if not _claim_pre_cache(token):
        _settle(token, CLAIM_SEEN_SECONDS)  # another caller has it in hand
        return
    cached, readable = _read_page(token)
    if not readable:
        return
    ttl = current_settings().cache_ttl_seconds
    if cached and cached.fresh(utcnow(), ttl):
        _hold_claim_while_fresh(token, cached, ttl)
        return
    with _fill_lock(token) as owner:
        if owner:
            try:
                _settle(token, _fresh_seconds(_fetch(token), ttl))
            except VendorError as exc:
                log.info("next page not pre-cached", extra={"vendor_error": exc.code})


def _settled(app: Flask) -> dict[str, float]:
    """This process's memo: page token → ``time.monotonic()`` until which the
    page needs no pre-caching (fresh, or claimed by another caller)."""
    memo: dict[str, float] = app.extensions.setdefault("stocks.settled_pages", {})
    return memo


def _settle(token: str, seconds: float) -> None:
    memo = _settled(current_app)
    if len(memo) >= SETTLED_MEMO_SIZE:  # tokens are few; a flood of odd ones is dropped
        memo.clear()
    memo[token] = time.monotonic() + seconds


def _fresh_seconds(cached: CachedPage, ttl: int) -> float:
    return (cached.fetched_at + timedelta(seconds=ttl) - utcnow()).total_seconds()


def _claim_key(token: str) -> str:
    return page_key(token) + ":prefetch"


def _claim_pre_cache(token: str) -> bool:
    try:
        claimed = redis_store.client.set(_claim_key(token), "1", nx=True, ex=PREFETCH_CLAIM_SECONDS)
    except RedisError as exc:
        cache.record_failure("cache", exc)
        return False
    return bool(claimed)


def _hold_claim_while_fresh(token: str, cached: CachedPage, ttl: int) -> None:
    """The page needs no pre-caching until it goes stale: keep the claim (and
    this process's memo) that long."""
    fresh_for = _fresh_seconds(cached, ttl)
    _settle(token, fresh_for)
    try:
        redis_store.client.pexpire(_claim_key(token), max(1, int(fresh_for * 1000)))
    except RedisError as exc:
        cache.record_failure("cache", exc)


# --- client tokens ------------------------------------------------------------


def _encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str, keys: set[str]) -> dict[str, Any]:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        payload = json.loads(raw)
    except ValueError:  # binascii.Error, UnicodeDecodeError, JSONDecodeError
        raise _bad_token("Not a token this service issued.") from None
    if not isinstance(payload, dict) or set(payload) != keys:
        raise _bad_token("Not a token this service issued for this listing.")
    offset = payload["o"]
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise _bad_token("Not a token this service issued.")
    return payload


def _browse_position(token: str | None) -> tuple[str | None, int]:
    if not token:
        return None, 0
    payload = _decode(token, {"o", "p"})
    vendor_token = payload["p"]
    if vendor_token is not None and (
        not isinstance(vendor_token, str) or not 0 < len(vendor_token) <= MAX_VENDOR_TOKEN_LENGTH
    ):
        raise _bad_token("Not a token this service issued.")
    return vendor_token, payload["o"]


def _search_offset(token: str | None, term: str) -> int:
    if not token:
        return 0
    payload = _decode(token, {"o", "q"})
    if payload["q"] != _fingerprint(term):
        raise _bad_token("This token belongs to another search.")
    offset: int = payload["o"]
    return offset


def _fingerprint(term: str) -> str:
    return hashlib.sha256(term.casefold().encode()).hexdigest()[:16]


def _bad_token(message: str) -> InvalidInput:
    return InvalidInput(message, details={"fields": {"nextToken": [message]}})
