"""The one catalogue walk: every vendor page, from the first, following ``nextToken``.

The vendor has no search and no single-stock endpoint, so search (when no
catalogue is stored), the buy path (for a symbol the token map does not
know) and the tokens refresh all walk the pages; each says how a page is
loaded (through the page cache, single-flight, or fetched with retries).
:func:`shared_catalogue` makes the whole walk single-flight across pods:
while one caller walks, the others wait and read the catalogue it stores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from service.marketdata import clock, fill, store
from service.marketdata.codec import CachedPage, Catalogue
from service.vendorapi.client import VendorStock

log = logging.getLogger(__name__)

MAX_WALK_PAGES = 500
# How long one walk may hold the walk lock (and others wait for it); a longer
# walk loses the lock and the next caller walks too.
WALK_LOCK_SECONDS = 120
WALK_POLL_SECONDS = 0.05

Load = Callable[[str | None], CachedPage]
"""Loads the vendor page a token names (``None``: the first page)."""


def pages(load: Load, start: str | None = None) -> Iterator[tuple[str | None, CachedPage]]:
    """Each page with its token, in vendor order from the page ``start`` names
    (``None``: the first), until the last page (the one without ``nextToken``)
    or ``MAX_WALK_PAGES`` pages; the caller may stop early. Errors of ``load``
    propagate."""
    token = start
    for _ in range(MAX_WALK_PAGES):
        cached = load(token)
        yield token, cached
        if cached.page.next_token is None:
            return
        token = cached.page.next_token
    log.warning("catalogue walk stopped after %d pages", MAX_WALK_PAGES)


def catalogue(load: Load) -> tuple[Catalogue, dict[str, VendorStock]]:
    """The whole catalogue, and its items by symbol in vendor order; the
    catalogue (without prices) and every symbol's page token are stored, so
    the next search or buy need not walk."""
    found: dict[str, VendorStock] = {}
    tokens: dict[str, str | None] = {}
    for token, cached in pages(load):
        found.update((item.symbol, item) for item in cached.page.items)
        tokens.update((item.symbol, token) for item in cached.page.items)
    walked = Catalogue.of(found.values(), clock.now())
    store.store_catalogue(walked, tokens)
    return walked, found


def shared_catalogue(load: Load) -> tuple[Catalogue, dict[str, VendorStock] | None]:
    """The whole catalogue, walked once however many callers (in any pod) ask
    at the same time: :func:`catalogue` under the walk lock, or the catalogue
    the lock's holder stored (then without items: ``None``). Fail open: when
    Redis cannot arbitrate, or the walk waited for stored nothing, this
    caller walks."""
    with fill.single_flight(store.walk_lock(WALK_LOCK_SECONDS)) as owner:
        if owner:
            return catalogue(load)
    deadline = time.monotonic() + WALK_LOCK_SECONDS
    while store.walk_running() and time.monotonic() < deadline:
        time.sleep(WALK_POLL_SECONDS)
    stored = store.read_catalogue()  # callers come here when there was none
    if stored is not None:
        return stored, None
    return catalogue(load)
