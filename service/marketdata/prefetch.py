"""Pre-caching the next page, so that a client following ``nextToken`` finds it cached.

The listing names the page to pre-cache; the api runs :func:`pre_cache` once
the response has been sent. Each process remembers which pages need no
pre-caching (fresh, or claimed by another caller) in :data:`settled`, so that
a busy cached page costs no Redis command for its next page.
"""

from __future__ import annotations

import logging
import time

from service.config import current_settings
from service.marketdata import clock, fill, store
from service.vendorapi.errors import VendorError

log = logging.getLogger(__name__)

# A pre-cached next page is claimed for a minute, so that the pods following
# one client's pages fetch it once, not once each.
PREFETCH_CLAIM_SECONDS = 60
# A process that finds another caller's claim leaves the page alone this long
# before asking Redis again (it cannot see how long the claim still stands).
CLAIM_SEEN_SECONDS = 5
SETTLED_MEMO_SIZE = 10_000

settled: dict[str, float] = {}
"""This process's memo: page token → ``time.monotonic()`` until which the page
needs no pre-caching. Per process by design (a module, not the app): it only
saves Redis commands, and Redis stays the arbiter between processes."""


def wanted(token: str) -> bool:
    """Whether the page ``token`` names may need pre-caching (no Redis command)."""
    return settled.get(token, 0.0) <= time.monotonic()


def pre_cache(token: str) -> None:
    """Fetch the page ``token`` names unless it is fresh or another caller has
    it in hand. Runs after the response, inside an app context; never raises
    for a vendor or Redis failure (the page is then loaded when asked for)."""
    # Claim before reading: while the claim stands this costs one small Redis
    # command, not a read and parse of the whole page; and the process then
    # remembers the page as settled, so its next requests cost nothing.
    if not store.claim_prefetch(token, PREFETCH_CLAIM_SECONDS):
        _settle(token, CLAIM_SEEN_SECONDS)
        return
    cached, readable = store.read_page(token)
    if not readable:
        return
    ttl = current_settings().cache_ttl_seconds
    if cached and cached.fresh(clock.now(), ttl):
        # Needs no pre-caching until it goes stale: keep the claim that long.
        fresh_for = cached.fresh_seconds(clock.now(), ttl)
        _settle(token, fresh_for)
        store.hold_prefetch_claim(token, fresh_for)
        return
    with fill.fill_lock(token) as owner:
        if owner:
            try:
                _settle(token, fill.fetch(token).fresh_seconds(clock.now(), ttl))
            except VendorError as exc:
                log.info("next page not pre-cached", extra={"vendor_error": exc.code})


def _settle(token: str, seconds: float) -> None:
    if len(settled) >= SETTLED_MEMO_SIZE:  # tokens are few; a flood of odd ones is dropped
        settled.clear()
    settled[token] = time.monotonic() + seconds
