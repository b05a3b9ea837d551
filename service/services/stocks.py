"""Stocks: the listing, search, and the market price a buy is checked against.

The listing (:func:`list_stocks`) is assembled from vendor pages loaded
through the page cache (:mod:`service.marketdata.fill`): fresh for
``CACHE_TTL_SECONDS``, single-flight on a miss, the last good copy (``stale``)
when the vendor fails. Search ranks the stored catalogue and loads only the
pages that hold the chosen matches. Client cursors are
:mod:`service.services.cursors`. Market data (the ``stocks:*`` keys) is read
and written only through :mod:`service.marketdata`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from service.config import current_settings
from service.marketdata import HIT, MISS, STALE, clock, fill, prefetch, store, walk
from service.marketdata.codec import CachedPage, Catalogue, CatalogueEntry, Quote
from service.metrics import CACHE_REQUESTS
from service.services import cursors
from service.vendorapi.client import VendorStock
from service.vendorapi.errors import UnknownSymbol, VendorBadResponse, VendorRejected

log = logging.getLogger(__name__)

_WORST_FIRST = (STALE, MISS, HIT)


@dataclass(frozen=True)
class ListingMeta:
    """Where a listing came from: ``cache`` is hit, miss or stale; ``as_of`` is
    when its oldest vendor page was fetched, ``age_seconds`` how long ago."""

    cache: str
    as_of: datetime
    age_seconds: int


@dataclass(frozen=True)
class StockListing:
    """One page of ``GET /stocks``; ``next_token`` is ``None`` on the last page.

    ``after_response``, when set, is work for the caller to run once the
    response has been sent (pre-caching the next vendor page), inside an app
    context. ``content_key``, when set, names exactly what ``items`` were
    taken from (each vendor page's token and fetch time, the offset and the
    limit): listings with equal keys have equal items, so their rendering
    may be reused.
    """

    items: tuple[VendorStock, ...]
    next_token: str | None
    meta: ListingMeta
    after_response: Callable[[], None] | None = None
    content_key: Hashable | None = None


def list_stocks(
    *, limit: int, search: str | None = None, next_token: str | None = None
) -> StockListing:
    """One page of stocks with current prices, at most ``limit`` items.

    Without ``search``: the vendor's catalogue in its own order. With
    ``search``: stocks whose symbol or name contains it (case-insensitive),
    across the whole catalogue, exact and leading symbol matches first.

    :raises InvalidToken: ``next_token`` was not issued for this listing;
    :raises ServiceUnavailable: the vendor failed and no copy is cached (with
        ``retry_after``).
    """
    term = (search or "").strip()
    if term:
        return _search(term, cursors.search_offset(next_token, term), limit)
    return _browse(*cursors.browse_position(next_token), limit)


class _Loads:
    """Loads the vendor pages of one listing and remembers how, to describe it."""

    def __init__(self, client_token: str | None = None) -> None:
        self.client_token = client_token  # the vendor token the client's cursor named
        self.results: list[str] = []
        self.fetched: list[datetime] = []
        self.versions: list[tuple[str | None, datetime]] = []

    def load(self, token: str | None) -> CachedPage:
        """The page ``token`` names, through the page cache.

        :raises InvalidInput: the vendor refused the token the client's cursor named.
        """
        from_client = token is not None and token == self.client_token
        try:
            cached, result = fill.load_page(token, from_client=from_client)
        except VendorRejected as exc:
            message = "This token is no longer valid; start again without it."
            raise cursors.invalid_token(message) from exc
        self.results.append(result)
        self.fetched.append(cached.fetched_at)
        self.versions.append((token, cached.fetched_at))
        return cached

    def meta(self, default_as_of: datetime) -> ListingMeta:
        now = clock.now()
        as_of = min(self.fetched, default=default_as_of)
        result = next((r for r in _WORST_FIRST if r in self.results), HIT)
        return ListingMeta(result, as_of, max(0, int((now - as_of).total_seconds())))


def _browse(token: str | None, offset: int, limit: int) -> StockListing:
    loads = _Loads(client_token=token)
    start = offset
    items: list[VendorStock] = []
    following: tuple[str | None, int] | None = (token, offset)
    last_next: str | None = None
    for page_token, cached in walk.pages(loads.load, start=token):
        page = cached.page
        taken = page.items[offset : offset + limit - len(items)]
        items.extend(taken)
        end = offset + len(taken)
        last_next = page.next_token
        if end < len(page.items):
            following = (page_token, end)
            break
        if page.next_token is None:
            following = None
            break
        offset = 0
        following = (page.next_token, 0)
        if len(items) >= limit:
            break
    next_token = None if following is None else cursors.browse_cursor(*following)
    meta = loads.meta(clock.now())
    content_key = (start, limit, *loads.versions)
    return StockListing(tuple(items), next_token, meta, _pre_cache(last_next), content_key)


def _pre_cache(token: str | None) -> Callable[[], None] | None:
    """The work that pre-caches the page ``token`` names, unless this process
    knows it needs none (then the request costs no Redis command for it)."""
    if token is None or not prefetch.wanted(token):
        return None
    return partial(prefetch.pre_cache, token)


def _search(term: str, offset: int, limit: int) -> StockListing:
    loads = _Loads()
    catalogue, walked = _catalogue(loads)
    needle = term.casefold()
    ranked = sorted(
        (rank, entry.symbol)
        for entry in catalogue.entries
        if (rank := _rank(needle, entry)) is not None
    )
    chosen = [symbol for _, symbol in ranked[offset : offset + limit]]
    found = _items_by_symbol(chosen, walked, loads)
    if walked is None and len(found) < len(chosen):
        # The map lost a symbol or the vendor moved or dropped it: walk (once
        # for every pod: a waiter reads the map the walk stored), so the next
        # search does not walk again.
        walked = walk.shared_catalogue(loads.load)[1]
        found = _items_by_symbol(chosen, walked, loads)
    items = tuple(found[symbol] for symbol in chosen if symbol in found)
    following = offset + limit if offset + limit < len(ranked) else None
    next_token = None if following is None else cursors.search_cursor(term, following)
    return StockListing(items, next_token, loads.meta(catalogue.built_at))


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


def _catalogue(loads: _Loads) -> tuple[Catalogue, dict[str, VendorStock] | None]:
    """The catalogue, and the items walked to build it (``None`` when it came
    from Redis: from the tokens refresh or an earlier walk)."""
    stored = store.read_catalogue()
    if stored is not None:
        return stored, None
    return walk.shared_catalogue(loads.load)


def _items_by_symbol(
    symbols: Sequence[str], walked: dict[str, VendorStock] | None, loads: _Loads
) -> dict[str, VendorStock]:
    """The current items of ``symbols``: from the walk, else from the pages the
    token map names (each loaded once, through the page cache)."""
    if walked is not None:
        return {symbol: walked[symbol] for symbol in symbols if symbol in walked}
    tokens = store.known_tokens(symbols)
    found: dict[str, VendorStock] = {}
    for token in dict.fromkeys(tokens[symbol] for symbol in symbols if symbol in tokens):
        page = loads.load(token or None).page
        found.update((item.symbol, item) for item in page.items if item.symbol in tokens)
    return found


# --- market prices (the buy path) -------------------------------------------


def market_price(symbol: str) -> Quote:
    """A price good enough to trade ``symbol`` on: :func:`cached_price`, else
    :func:`vendor_price`.

    :raises UnknownSymbol: the vendor does not list ``symbol``;
    :raises VendorBadResponse: the vendor lists it but its item is unreadable;
    :raises VendorError: the vendor failed (``CircuitOpen`` included).
    """
    return cached_price(symbol) or vendor_price(symbol)


def cached_price(symbol: str) -> Quote | None:
    """The cached quote of ``symbol`` from the current repricing cycle, if
    there is one (counted as a price cache hit or miss); never calls the vendor."""
    cached = store.cached_quotes([symbol]).get(symbol)
    if cached and cached.fresh_for_trading(clock.now(), current_settings().cache_ttl_seconds):
        CACHE_REQUESTS.labels("price", "hit").inc()
        return cached
    CACHE_REQUESTS.labels("price", "miss").inc()
    return None


def vendor_price(symbol: str) -> Quote:
    """``symbol``'s quote from the vendor, for a symbol :func:`cached_price`
    had none of: exactly one vendor page found through the symbol → token
    map, loaded single-flight (concurrent buys of one symbol make one vendor
    call); only when the map does not know the symbol (or its page no longer
    lists it) the catalogue is walked, filling the map on the way.

    :raises: as :func:`market_price`.
    """
    token = store.known_token(symbol)
    if token is not None:
        try:
            found = _quote_on(fill.load_for_trading(token or None, symbol), symbol)
        except VendorRejected as exc:
            # A token the vendor no longer accepts: the map is stale, walk.
            log.info("stale page token, walking", extra={"symbol": symbol, "error": exc.message})
            found = None
        if found:
            return found
    return _walk_for(symbol)


def _quote_on(cached: CachedPage, symbol: str) -> Quote | None:
    """The page's quote of ``symbol``; ``None`` when the page does not list it.

    :raises VendorBadResponse: the page lists it, but its item is unreadable.
    """
    quote = cached.quote(symbol)
    if quote is None and any(skipped.symbol == symbol for skipped in cached.page.skipped):
        raise VendorBadResponse(f"The vendor's quote for {symbol} cannot be read.")
    return quote


def _walk_for(symbol: str) -> Quote:
    """The quote of a symbol the token map does not know: made-up symbols
    cost at most one catalogue walk, shared by every pod.

    A symbol a walk did not find is remembered for one repricing cycle (one
    small key read per repeated buy); else the catalogue (tokens refresh, or
    an earlier walk) decides; only without one is the catalogue walked,
    single-flight, and stored. A stock listed since is known after the next
    tokens refresh.
    """
    if store.known_unknown(symbol):
        raise _unknown(symbol)
    catalogue = store.read_catalogue()
    if catalogue is None:
        # One walk for every pod; it stores the catalogue for the next buys
        # and leaves its pages cached for _walk_to.
        catalogue = walk.shared_catalogue(partial(_load_checking, symbol))[0]
    found = _walk_to(symbol) if catalogue.lists(symbol) else None
    if found is None:
        store.remember_unknown(symbol, current_settings().cache_ttl_seconds)
        raise _unknown(symbol)
    return found


def _load_checking(symbol: str, token: str | None) -> CachedPage:
    """:func:`fill.load_for_trading`, for a walk that looks for ``symbol``.

    :raises VendorBadResponse: the page lists ``symbol`` but its item is
        unreadable (the catalogue and cached pages keep only readable items).
    """
    cached = fill.load_for_trading(token)
    _quote_on(cached, symbol)
    return cached


def _walk_to(symbol: str) -> Quote | None:
    """The current quote of ``symbol`` from the first page that lists it."""
    for token, cached in walk.pages(fill.load_for_trading):
        if _quote_on(cached, symbol) is not None:
            # A cached page locates the symbol; the price must be of this cycle.
            found = _quote_on(fill.load_for_trading(token, symbol), symbol)
            if found:
                return found
    return None


def _unknown(symbol: str) -> UnknownSymbol:
    message = f"{symbol} is not listed by the market vendor."
    return UnknownSymbol(message, details={"symbol": symbol})
