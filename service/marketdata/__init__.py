"""Market data: the vendor's pages, quotes, symbol → page-token map and
catalogue, kept in Redis.

This package is the only owner of the ``stocks:*`` keys: ``codec`` (stored
forms), ``store`` (keys, reads and writes, all fail-open), ``fill`` (the
single-flight page load: lock, wait, fetch or last good copy), ``fresh``
(this process's copies of fresh pages), ``prefetch`` (pre-caching the next
page), ``walk`` (the one catalogue walk) and ``clock``.
Use cases (``service.services``) call these; they never touch the keys.
"""

from __future__ import annotations

# How a page was got, as the listing's ``meta.cache`` reports it.
HIT, MISS, STALE = "hit", "miss", "stale"
