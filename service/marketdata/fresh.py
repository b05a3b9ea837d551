"""This process's copies of the pages it has seen fresh, so that a cached
listing costs no Redis command.

A copy is served only while it is fresh (fetched less than
``CACHE_TTL_SECONDS`` ago), exactly as the Redis copy it came from would be:
no copy outlives the page's freshness deadline, and past it the listing goes
back to Redis and its single-flight fill. A newer copy (this process fetched
the page again) replaces an older one. One memo per app: a process in
production; tests build several apps to play several pods.
"""

from __future__ import annotations

from flask import current_app

from service.config import current_settings
from service.marketdata import clock
from service.marketdata.codec import CachedPage

# Page tokens come from signed cursors and vendor pages: few. A flood of odd
# ones empties the memo rather than growing it.
MEMO_SIZE = 1024
_EXTENSION = "marketdata.fresh_pages"


class FreshPages:
    """Fresh pages by token (``None``: the first page)."""

    def __init__(self) -> None:
        self._pages: dict[str | None, CachedPage] = {}

    def get(self, token: str | None) -> CachedPage | None:
        """The page ``token`` names while it is fresh, else ``None``."""
        cached = self._pages.get(token)
        if cached is None or not cached.fresh(clock.now(), current_settings().cache_ttl_seconds):
            return None
        return cached

    def keep(self, token: str | None, cached: CachedPage) -> None:
        """Remember ``cached`` unless a copy fetched later is already kept."""
        current = self._pages.get(token)
        if current is not None and current.fetched_at >= cached.fetched_at:
            return
        if len(self._pages) >= MEMO_SIZE:
            self._pages.clear()
        self._pages[token] = cached


def pages() -> FreshPages:
    """The current app's memo."""
    memo: FreshPages = current_app.extensions.setdefault(_EXTENSION, FreshPages())
    return memo
