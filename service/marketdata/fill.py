"""Single-flight page loads: concurrent misses for one vendor page make one vendor call.

A page is fresh for ``CACHE_TTL_SECONDS`` after it was fetched. A caller
that finds no fresh copy takes the page's lock in Redis (with expiry) and
fetches; the others poll the cache until the page is filled. When Redis
fails, everything goes straight to the vendor (fail open). What happens when
the vendor fails depends on the caller: the listing serves the last good copy
(``stale``), the buy path never trades on one and gets the vendor's error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from redis.lock import Lock

from service import cache
from service.cache import redis_guard
from service.config import current_settings
from service.errors import ServiceUnavailable
from service.marketdata import HIT, MISS, STALE, clock, fresh, store
from service.marketdata.codec import CachedPage
from service.metrics import CACHE_REQUESTS
from service.vendorapi.client import LIST_ATTEMPTS, vendor_client
from service.vendorapi.errors import VendorError, VendorRejected

log = logging.getLogger(__name__)

FILL_POLL_SECONDS = 0.02
UNAVAILABLE_RETRY_SECONDS = 5
_PAGE_HITS = CACHE_REQUESTS.labels("page", HIT)


@dataclass(frozen=True)
class _Policy:
    """What a caller accepts: a fresh cached page is used when ``usable``;
    ``stale_ok``: a vendor failure is answered with the last good copy;
    ``from_client``: the token came from a client, so a vendor 400 for it is
    raised rather than covered by a copy."""

    usable: Callable[[CachedPage], bool]
    stale_ok: bool
    from_client: bool = False


def fetch(token: str | None) -> CachedPage:
    """One vendor page, fetched now (no lock) and remembered in Redis.

    :raises VendorError: as :meth:`VendorClient.list_stocks`.
    """
    page = vendor_client().list_stocks(token)
    fetched_at = clock.now()
    store.remember_page(page, token, fetched_at)
    cached = CachedPage(page, fetched_at)
    fresh.pages().keep(token, cached)
    return cached


def load_page(token: str | None, *, from_client: bool = False) -> tuple[CachedPage, str]:
    """The vendor page ``token`` names for the listing, and how it was got
    (:data:`HIT`, :data:`MISS`, :data:`STALE`).

    Fresh from this process's memo (no Redis command) or the cache; else
    fetched under the page's lock (other callers wait for the cache to fill);
    else, when the vendor fails, the last good copy.

    :raises VendorRejected: ``from_client`` and the vendor refused the token (400);
    :raises ServiceUnavailable: the vendor failed and no copy is cached (with
        ``retry_after``).
    """
    memo = fresh.pages()
    kept = memo.get(token)
    if kept is not None:
        _PAGE_HITS.inc()
        return kept, HIT
    loaded, result = _load(
        token, _Policy(lambda _cached: True, stale_ok=True, from_client=from_client)
    )
    if result == HIT:
        memo.keep(token, loaded)  # fresh (a miss was kept by its fetch)
    return loaded, result


def load_for_trading(token: str | None, symbol: str | None = None) -> CachedPage:
    """The vendor page ``token`` names, never a stale copy: for the buy path.

    A fresh cached page is used unless ``symbol`` is given and its quote on
    that page may have been repriced since (then the page is fetched again,
    still single-flight).

    :raises VendorError: the vendor failed or refused the token.
    """

    def usable(cached: CachedPage) -> bool:
        if symbol is None:
            return True
        quote = cached.quote(symbol)
        ttl = current_settings().cache_ttl_seconds
        return quote is not None and quote.fresh_for_trading(clock.now(), ttl)

    return _load(token, _Policy(usable, stale_ok=False))[0]


def _load(token: str | None, policy: _Policy) -> tuple[CachedPage, str]:
    cached, readable = store.read_page(token)
    loaded, result = _cached_or_filled(token, cached, readable, policy)
    CACHE_REQUESTS.labels("page", result if readable else "error").inc()
    return loaded, result


def _cached_or_filled(
    token: str | None, cached: CachedPage | None, readable: bool, policy: _Policy
) -> tuple[CachedPage, str]:
    ttl = current_settings().cache_ttl_seconds
    if cached is not None and cached.fresh(clock.now(), ttl) and policy.usable(cached):
        return cached, HIT
    with fill_lock(token) as owner:
        if owner:
            again = store.read_page(token)[0] if readable else None
            if again is not None and _filled_since(again, cached, ttl):
                return again, HIT  # filled between our read and our lock
            return _fetch_or_fallback(token, cached, policy)
        filled, redis_ok = _await_fill(token, cached, ttl)
    if filled is not None:
        return filled, HIT
    if not redis_ok or not policy.stale_ok:
        # Redis failed while we waited (the wait tells nothing), or the fetch
        # we waited for failed and this caller may not trade on a copy.
        return _fetch_or_fallback(token, cached, policy)
    return _stale_or_unavailable(cached, None), STALE  # the fetch we waited for failed


def _filled_since(page: CachedPage, seen: CachedPage | None, ttl: int) -> bool:
    """Whether ``page`` is a fresh copy fetched after ``seen`` (the copy this
    caller found wanting, if any)."""
    fresh = page.fresh(clock.now(), ttl)
    return fresh and (seen is None or page.fetched_at > seen.fetched_at)


def _fetch_or_fallback(
    token: str | None, stale: CachedPage | None, policy: _Policy
) -> tuple[CachedPage, str]:
    try:
        return fetch(token), MISS
    except VendorError as exc:
        refused = isinstance(exc, VendorRejected) and exc.vendor_status == 400
        if not policy.stale_ok or (policy.from_client and token is not None and refused):
            raise
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


def fill_lock(token: str | None) -> AbstractContextManager[bool]:
    """Hold the page's single-flight lock for the block; yields whether this
    caller should fetch: it holds the lock, or Redis cannot arbitrate."""
    return single_flight(store.page_lock(token, _fill_seconds()))


@contextmanager
def single_flight(lock: Lock) -> Iterator[bool]:
    """Hold ``lock`` (non-blocking, with expiry) for the block if it is free;
    yields whether this caller should do the work: it holds the lock, or Redis
    cannot arbitrate (fail open)."""
    held = False
    with redis_guard("cache") as guard:
        held = bool(lock.acquire())
    try:
        yield held or guard.failed  # fail open: fetch without the lock
    finally:
        if held:
            cache.release(lock)


def _await_fill(
    token: str | None, seen: CachedPage | None, ttl: int
) -> tuple[CachedPage | None, bool]:
    """Poll while another caller fetches the page: the fresh copy, or ``None``
    when its fetch ended (or took too long) without one; and ``False`` when
    Redis failed meanwhile (the wait tells nothing then)."""
    deadline = time.monotonic() + _fill_seconds()
    while time.monotonic() < deadline:
        time.sleep(FILL_POLL_SECONDS)
        polled = store.poll_page(token)
        if polled is None:
            return None, False
        cached, locked = polled
        if cached is not None and _filled_since(cached, seen, ttl):
            return cached, True
        if not locked:
            return None, True
    return None, True
