"""The one catalogue walk: every vendor page, from the first, following ``nextToken``.

The vendor has no search and no single-stock endpoint, so search (when no
catalogue is stored), the buy path (for a symbol the token map does not
know) and the tokens refresh all walk the pages; each says how a page is
loaded (through the page cache, single-flight, or fetched with retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from service.marketdata import clock, store
from service.marketdata.codec import CachedPage, Catalogue
from service.vendorapi.client import VendorStock

log = logging.getLogger(__name__)

MAX_WALK_PAGES = 500

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
    catalogue (without prices) is stored, so the next search need not walk."""
    found: dict[str, VendorStock] = {}
    for _, cached in pages(load):
        found.update((item.symbol, item) for item in cached.page.items)
    walked = Catalogue.of(found.values(), clock.now())
    store.store_catalogue(walked)
    return walked, found
