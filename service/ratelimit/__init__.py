"""Global rate and concurrency limits (DESIGN §4), shared by every worker and pod.

Every endpoint except those of :data:`~service.api.OPEN_BLUEPRINTS` (probes, metrics, API
docs) is guarded by two limits, so a feature blueprint is limited without
doing anything:

* **rate** — an application-wide limit ``RATE_LIMIT`` on limits' *moving*
  window: an exact log of admissions, so a burst cannot double the
  limit across a window edge. The log lives in Redis (one key for everybody,
  or one per client address with ``RATE_LIMIT_SCOPE=client``).
* **per-user rate** (``AUTH_MODE=jwt`` with ``USER_RATE_LIMIT``) — the same
  kind of window per token user, checked first, so one user cannot starve
  the others. Its 429s name the limit hit: ``details.scope`` is ``user``,
  ``global`` or ``client``.
* **concurrency** — at most ``MAX_CONCURRENT_REQUESTS`` in flight: a counting
  semaphore in Redis whose slots are *leases* (:class:`ConcurrencyLimiter`),
  taken only once the request's body has arrived (``service.api.read_body``).
  A process renews the leases of its running requests from a background
  thread; a process that dies stops renewing and its slots come back within
  :data:`LEASE_SECONDS`.

The limits are checked by one ``before_request`` hook through the strategy
API of ``limits``, the engine flask-limiter is built on: flask-limiter's
per-request resolution of decorated, blueprint, default and application
limits cost a fifth of a cached listing's CPU for the one or two limits this
service has (issue 17).

Cost per request: one Redis round trip. One Lua script records the rate hit,
returns the window (so the ``RateLimit-*`` headers need no second call),
removes the slots given back by the process's requests that have finished
since its last hit and, when admitted, takes the concurrency slot. A finished
request's slot is queued in-process, off its path; when no hit comes within
:data:`~service.ratelimit.leases.RELEASE_DELAY_SECONDS` the lease keeper
removes the queued slots with one pipelined ``ZREM``. A slot is thus held a
few milliseconds past its request at most, never given back early; a
request that finds every slot held looks once more after that delay (a
second round trip, for refusals only) before its 429, so a client's next
request is never refused for its previous one's slot.

Redis failures never break a request: the rate limit fails open and the
concurrency limit falls back to a per-process count; both are logged and
counted in ``trading_redis_errors_total{component="limiter"}``. Without
``REDIS_URL`` both limits are per process (memory storage, local counter).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, g, request
from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from service.api import OPEN_BLUEPRINTS
from service.config import Settings
from service.errors import RateLimited, TooManyConcurrentRequests
from service.extensions import thread_connections
from service.metrics import RATE_LIMITED
from service.ratelimit import window
from service.ratelimit.leases import (
    LEASE_SECONDS,
    RELEASE_DELAY_SECONDS,
    ConcurrencyLimiter,
    Slot,
)
from service.ratelimit.window import RateWindow

__all__ = ["CONCURRENCY_KEY_PREFIX", "LEASE_SECONDS", "RATE_STORAGE_PREFIX", "register_limits"]

log = logging.getLogger(__name__)

# limits' strategies keep different Redis types under their keys: a new
# strategy needs a new prefix, else the old keys answer WRONGTYPE.
RATE_KEY_PREFIX = "moving-window-v1"
RATE_STORAGE_PREFIX = "trading:ratelimit"
CONCURRENCY_KEY_PREFIX = "trading:concurrency:v1"
CONCURRENCY_RETRY_AFTER_SECONDS = 1
# A request that finds every slot held looks again this much later: the
# release delay, plus a busy worker's GIL switch interval (5 ms) for its keeper.
SECOND_LOOK_SECONDS = RELEASE_DELAY_SECONDS + 0.008
# The scope of the per-user limit, named in its 429 (``details.scope``).
USER_SCOPE = "user"


@dataclass(frozen=True)
class _Rate:
    """One moving-window limit: its rate, scope and the bucket of a request
    (``None``: the limit does not apply to it)."""

    item: RateLimitItem
    scope: str
    bucket: Callable[[], str | None]


def _exempt() -> bool:
    return request.blueprint in OPEN_BLUEPRINTS


def _add_rate_headers(response: Response) -> Response:
    window: RateWindow | None = g.get("rate_window")
    if window is not None:
        # Added, not set: nothing else writes them, and ``update`` would
        # search the response's headers for each (4 µs a request).
        response.headers.extend(window.headers())
    return response


def register_limits(app: Flask, settings: Settings) -> None:
    """Guard every endpoint outside :data:`~service.api.OPEN_BLUEPRINTS` with both limits.

    Register after the request-id and request-metrics hooks (so a 429 carries
    a request id and is counted) and after the Redis client. Excess requests
    get 429 with the error envelope (``rate_limited`` or
    ``too_many_concurrent_requests``) and ``Retry-After``; every response of
    a guarded endpoint carries ``RateLimit-Limit``/``-Remaining``/``-Reset``
    when the rate window is known (not while Redis fails), for the limit with
    the fewest places left. With ``AUTH_MODE=jwt`` and ``USER_RATE_LIMIT`` the
    per-user limit comes first (register after the auth hook, which sets
    ``g.user_id``): a request refused for its user takes nothing from
    everybody else's budget. Nothing is registered when ``RATE_LIMIT_ENABLED``
    is false.
    """
    if not settings.rate_limit_enabled:
        return
    redis: Redis | None = app.extensions["redis"] if settings.redis_url else None
    client_key = _client_key(settings.rate_limit_scope)
    concurrency = ConcurrencyLimiter(settings.max_concurrent_requests, redis)
    rates = [_Rate(parse(settings.rate_limit), settings.rate_limit_scope, client_key)]
    user_rate = settings.user_rate_limit if settings.auth_mode == "jwt" else None
    if user_rate is not None:
        rates.insert(0, _Rate(parse(user_rate), USER_SCOPE, lambda: g.get("user_id")))
    windows = MovingWindowRateLimiter(_storage(redis, concurrency))
    app.before_request(_check_limits(windows, rates, concurrency, name_scope=len(rates) > 1))
    app.after_request(_add_rate_headers)
    app.teardown_request(_give_slot(concurrency))


def _storage(redis: Redis | None, leases: ConcurrencyLimiter) -> Storage:
    """limits' storage of the windows (service/ratelimit/window.py): in Redis,
    where its hits also take the concurrency slots, else in this process."""
    if redis is None:
        return window.LocalWindowStorage("memory://")
    return window.SharedWindowStorage(
        "redis://",
        thread_connections(redis),
        connection_pool=redis.connection_pool,
        key_prefix=RATE_STORAGE_PREFIX,
        leases=leases,
    )


def _check_limits(
    windows: MovingWindowRateLimiter,
    rates: list[_Rate],
    concurrency: ConcurrencyLimiter,
    name_scope: bool,
) -> Callable[[], None]:
    """The hook: each rate in order (the last one's hit also takes the
    concurrency slot), then the slot on its own if the hit could not take it.
    Redis errors fail open in the storage; anything else unforeseen is
    logged and lets the request through."""

    def check_limits() -> None:
        if request.endpoint is None or _exempt():
            return
        slot_key = f"{CONCURRENCY_KEY_PREFIX}:{rates[-1].bucket()}"
        for rate in rates:
            bucket = rate.bucket()
            if bucket is None:
                continue
            if rate is rates[-1]:
                window.want_slot(slot_key)
            try:
                admitted = windows.hit(rate.item, RATE_KEY_PREFIX, bucket, rate.scope)
            except Exception:
                log.exception("rate limit %s not checked; request let through", rate.item)
                admitted = True
            if not admitted:
                _refuse(rate, name_scope)
        _take_slot(concurrency, slot_key)

    return check_limits


def _refuse(rate: _Rate, name_scope: bool) -> None:
    """Raise the 429 of ``rate``; with several limits (``name_scope``) its
    ``details.scope`` says which one was hit."""
    RATE_LIMITED.labels("user_rate" if rate.scope == USER_SCOPE else "rate").inc()
    details = {"limit": str(rate.item)}
    if name_scope:
        details["scope"] = rate.scope
    window: RateWindow | None = g.get("rate_window")
    raise RateLimited(details=details, retry_after=window.reset_in() if window else 1)


def _take_slot(concurrency: ConcurrencyLimiter, slot_key: str) -> None:
    """At most ``concurrency.limit`` guarded requests in flight (per bucket of
    the last rate). The slot was taken with the rate hit unless Redis failed
    or there is none: then it is taken here, on its own."""
    if "concurrency_slot" in g:
        return
    full = g.pop("concurrency_full", False)
    slot = None if full else concurrency.acquire(slot_key)
    if slot is None:
        # A slot another worker's finished request gave back may wait there up
        # to RELEASE_DELAY_SECONDS (and its keeper for the GIL): look once more
        # after that, so a client's next request never finds its last one
        # still counted.
        time.sleep(SECOND_LOOK_SECONDS)
        slot = concurrency.acquire(slot_key)
    if slot is None:
        RATE_LIMITED.labels("concurrency").inc()
        raise TooManyConcurrentRequests(
            details={"limit": concurrency.limit},
            retry_after=CONCURRENCY_RETRY_AFTER_SECONDS,
        )
    g.concurrency_slot = slot


def _give_slot(concurrency: ConcurrencyLimiter) -> Callable[[BaseException | None], None]:
    def give_slot(_exc: BaseException | None) -> None:
        slot: Slot | None = g.pop("concurrency_slot", None)
        if slot is not None:
            concurrency.release_later(slot)

    return give_slot


def _client_key(scope: str) -> Callable[[], str]:
    """The limits' bucket: one for everybody, or the client's address
    (``X-Forwarded-For`` is trusted through ``TRUSTED_PROXIES``, see create_app)."""
    if scope == "client":
        return lambda: request.remote_addr or "unknown"
    return lambda: "global"
