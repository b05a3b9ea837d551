"""The ``stocks:*`` keys in Redis: what they are named, how they are read and written.

Every read and write fails open through :func:`service.cache.redis_guard`:
a Redis failure reads as "nothing cached" and a write is skipped, so callers
fall back to the vendor.

- ``stocks:page:<digest>`` a vendor page (:class:`CachedPage`), with its
  single-flight lock (``…:lock``) and pre-cache claim (``…:prefetch``);
- ``stocks:quote:<symbol>`` a quote (:class:`Quote`);
- ``stocks:tokens`` the symbol → page-token map (``""``: the first page);
- ``stocks:catalogue`` the catalogue search matches on (:class:`Catalogue`),
  with the lock that makes its walk single-flight (``stocks:walk:lock``);
- ``stocks:unknown:<symbol>`` a symbol a full walk did not find, for one
  repricing cycle;
- ``stocks:tokens:refresh:*`` the tokens refresh's lock and its last runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis
from redis.lock import Lock
from redis.typing import EncodableT, FieldT

from service import cache
from service.cache import JOB_RECORD_SECONDS, redis_guard
from service.extensions import redis_store
from service.marketdata.codec import CachedPage, Catalogue, Quote
from service.vendorapi.client import StockPage

TOKEN_MAP_KEY = "stocks:tokens"
CATALOGUE_KEY = "stocks:catalogue"
WALK_LOCK_KEY = "stocks:walk:lock"
REFRESH_LOCK_KEY = "stocks:tokens:refresh:lock"
LAST_RUN_KEY = "stocks:tokens:refresh:last_run"
LAST_SUCCESS_KEY = "stocks:tokens:refresh:last_success"
FIRST_PAGE = ""  # the token-map value of symbols on the first page (no token)
# Quotes and pages stay readable for a day: portfolios show quotes with their
# age, and the listing serves the last good page when the vendor fails. Only
# what is younger than one repricing cycle counts as fresh.
QUOTE_RETENTION_SECONDS = 86_400
PAGE_RETENTION_SECONDS = 86_400
# Kept three refresh cycles, so a late or failed daily refresh never leaves
# search (or the unknown-symbol check) without a catalogue; the token map too.
CATALOGUE_RETENTION_SECONDS = 3 * 86_400


def quote_key(symbol: str) -> str:
    return f"stocks:quote:{symbol}"


def page_key(token: str | None) -> str:
    """The cache key of the vendor page ``token`` names (``None``: the first)."""
    digest = hashlib.sha256((token or FIRST_PAGE).encode()).hexdigest()[:32]
    return f"stocks:page:{digest}"


def unknown_key(symbol: str) -> str:
    return f"stocks:unknown:{symbol}"


def lock_key(token: str | None) -> str:
    """The key of the single-flight lock of the page ``token`` names."""
    return page_key(token) + ":lock"


def _claim_key(token: str) -> str:
    return page_key(token) + ":prefetch"


# --- pages and quotes -------------------------------------------------------


def remember_page(page: StockPage, token: str | None, fetched_at: datetime) -> None:
    """Store the page, its quotes and its symbol → token entries, in one round trip."""
    with redis_guard("cache"):
        pipe = redis_store.client.pipeline(transaction=False)
        cached = CachedPage(page, fetched_at)
        pipe.set(page_key(token), cache.dumps(cached.to_json()), ex=PAGE_RETENTION_SECONDS)
        for item in page.items:
            quote = cache.dumps(Quote.of(item, fetched_at).to_json())
            pipe.set(quote_key(item.symbol), quote, ex=QUOTE_RETENTION_SECONDS)
        if page.items:
            pipe.hset(
                TOKEN_MAP_KEY, mapping={item.symbol: token or FIRST_PAGE for item in page.items}
            )
            pipe.expire(TOKEN_MAP_KEY, CATALOGUE_RETENTION_SECONDS)
        pipe.execute()


def read_page(token: str | None) -> tuple[CachedPage | None, bool]:
    """The cached page (any age) and whether Redis could be read at all."""
    raw = None
    with redis_guard("cache") as guard:
        raw = redis_store.client.get(page_key(token))
    return _page(raw), not guard.failed


def poll_page(token: str | None) -> tuple[CachedPage | None, bool] | None:
    """The cached page (any age) and whether its single-flight lock is held,
    in one round trip; ``None`` when Redis failed."""
    with redis_guard("cache"):
        # The lock first: a page written just before the lock was let go is then
        # seen by the GET (both run in order on the server).
        pipe = redis_store.client.pipeline(transaction=False)
        pipe.exists(lock_key(token))
        pipe.get(page_key(token))
        locked, raw = pipe.execute()
        return _page(raw), bool(locked)
    return None


def _page(raw: Any) -> CachedPage | None:
    return None if raw is None else CachedPage.from_json(json.loads(raw))


def page_lock(token: str | None, seconds: float) -> Lock:
    """The (not yet acquired) single-flight lock of the page ``token`` names."""
    return redis_store.client.lock(lock_key(token), timeout=seconds, blocking=False)


def cached_quotes(symbols: Iterable[str]) -> dict[str, Quote]:
    """Cached quotes of any age (no vendor call); missing symbols are absent."""
    wanted = list(dict.fromkeys(symbols))
    found = cache.get_many_json([quote_key(symbol) for symbol in wanted])
    # A quote stored by a release before quotes carried the whole item (no
    # "name") reads as not cached; the next page load rewrites it.
    return {data["symbol"]: Quote.from_json(data) for data in found.values() if "name" in data}


# --- the token map and the catalogue ----------------------------------------


def known_token(symbol: str) -> str | None:
    """The token of the page that listed ``symbol`` last time (``""`` for the
    first page), or ``None`` when the map does not know it."""
    return known_tokens([symbol]).get(symbol)


def known_tokens(symbols: Sequence[str]) -> dict[str, str]:
    """The page tokens the map knows for ``symbols`` (one round trip)."""
    raws: list[Any] = []
    if symbols:
        with redis_guard("cache"):
            raws = redis_store.client.hmget(TOKEN_MAP_KEY, list(symbols))
    return {
        symbol: raw.decode() if isinstance(raw, bytes) else str(raw)
        for symbol, raw in zip(symbols, raws, strict=False)
        if raw is not None
    }


def read_catalogue() -> Catalogue | None:
    """The stored catalogue, or ``None`` when there is none (or Redis fails)."""
    stored = cache.get_json(CATALOGUE_KEY)
    return None if stored is None else Catalogue.from_json(stored)


def store_catalogue(catalogue: Catalogue, tokens: Mapping[str, str | None] | None = None) -> None:
    """Store the catalogue and, from a walk, each symbol's page token (``tokens``:
    symbol → the token of its page), in one round trip: pages served from the
    cache on the way did not write the map."""
    with redis_guard("cache"):
        pipe = redis_store.client.pipeline(transaction=False)
        pipe.set(CATALOGUE_KEY, cache.dumps(catalogue.to_json()), ex=CATALOGUE_RETENTION_SECONDS)
        if tokens:
            pipe.hset(
                TOKEN_MAP_KEY,
                mapping={symbol: token or FIRST_PAGE for symbol, token in tokens.items()},
            )
            pipe.expire(TOKEN_MAP_KEY, CATALOGUE_RETENTION_SECONDS)
        pipe.execute()


def walk_lock(seconds: float) -> Lock:
    """The (not yet acquired) lock that makes the catalogue walk single-flight."""
    return redis_store.client.lock(WALK_LOCK_KEY, timeout=seconds, blocking=False)


def walk_running() -> bool | None:
    """Whether a catalogue walk holds :func:`walk_lock`; ``None`` when Redis failed."""
    with redis_guard("cache"):
        return bool(redis_store.client.exists(WALK_LOCK_KEY))
    return None


def remember_unknown(symbol: str, seconds: int) -> None:
    """Remember for ``seconds`` that the vendor does not list ``symbol``."""
    with redis_guard("cache"):
        redis_store.client.set(unknown_key(symbol), "1", ex=seconds)


def known_unknown(symbol: str) -> bool:
    """Whether ``symbol`` is remembered as not listed (:func:`remember_unknown`)."""
    found = None
    with redis_guard("cache"):
        found = redis_store.client.exists(unknown_key(symbol))
    return bool(found)


def replace_map_and_catalogue(tokens: Mapping[str, str], catalogue: Catalogue) -> bool:
    """Replace the whole token map and the catalogue in one Redis transaction;
    ``False`` when Redis failed (nothing changed then)."""
    # Built key by key: redis-py types a mapping's keys as FieldT, and mypy
    # takes no Mapping[str, str] for that.
    mapping: dict[FieldT, EncodableT] = {k: v for k, v in tokens.items()}  # noqa: C416
    with redis_guard("tokens") as guard:
        pipe = redis_store.client.pipeline(transaction=True)
        pipe.delete(TOKEN_MAP_KEY)
        pipe.hset(TOKEN_MAP_KEY, mapping=mapping)
        pipe.expire(TOKEN_MAP_KEY, CATALOGUE_RETENTION_SECONDS)
        pipe.set(CATALOGUE_KEY, cache.dumps(catalogue.to_json()), ex=CATALOGUE_RETENTION_SECONDS)
        pipe.execute()
    return not guard.failed


# --- the next page's pre-cache claim ---------------------------------------


def claim_prefetch(token: str, seconds: int) -> bool:
    """Claim pre-caching the page ``token`` names for ``seconds``; ``False``
    when another caller holds the claim (or Redis fails)."""
    claimed = None
    with redis_guard("cache"):
        claimed = redis_store.client.set(_claim_key(token), "1", nx=True, ex=seconds)
    return bool(claimed)


def hold_prefetch_claim(token: str, seconds: float) -> None:
    """Keep the claim on the page ``token`` names ``seconds`` from now."""
    with redis_guard("cache"):
        redis_store.client.pexpire(_claim_key(token), max(1, int(seconds * 1000)))


# --- the tokens refresh's lock and records ----------------------------------


def refresh_lock(seconds: int) -> Lock:
    """The (not yet acquired) lock that lets one tokens refresh run at a time."""
    return redis_store.client.lock(REFRESH_LOCK_KEY, timeout=seconds, blocking=False)


def record_refresh(record: Mapping[str, Any], ok: bool) -> None:
    """Keep ``record`` as the last run's (and, when ``ok``, the last success's)."""
    encoded = cache.dumps(record)
    with redis_guard("tokens"):
        pipe = redis_store.client.pipeline(transaction=True)
        pipe.set(LAST_RUN_KEY, encoded, ex=JOB_RECORD_SECONDS)
        if ok:
            pipe.set(LAST_SUCCESS_KEY, encoded, ex=JOB_RECORD_SECONDS)
        pipe.execute()


def refresh_records(client: redis.Redis) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The records of the last run and the last successful run, read with
    ``client`` (metrics are collected outside any app context); ``None`` for
    a run never recorded, or when Redis fails."""
    raws: list[Any] = [None, None]
    with redis_guard("metrics"):
        raws = client.mget([LAST_RUN_KEY, LAST_SUCCESS_KEY])
    last_run, last_success = (json.loads(raw) if raw else None for raw in raws)
    return last_run, last_success
