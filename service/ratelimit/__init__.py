"""Global rate and concurrency limits (DESIGN §4), shared by every worker and pod.

Every endpoint except those of :data:`~service.api.OPEN_BLUEPRINTS` (probes, metrics, API
docs) is guarded by two limits, so a feature blueprint is limited without
doing anything:

* **rate** — flask-limiter's application-wide limit ``RATE_LIMIT`` on a
  *moving* window: an exact log of admissions, so a burst cannot double the
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

Cost per request: one Redis round trip. One Lua script records the rate hit,
returns the window (so the ``RateLimit-*`` headers need no second call),
removes the slots given back by the process's requests that have finished
since its last hit and, when admitted, takes the concurrency slot. A finished
request's slot is queued in-process, off its path; when no hit comes within
:data:`~service.ratelimit.leases.RELEASE_DELAY_SECONDS` the lease keeper
removes the queued slots with one pipelined ``ZREM``. A slot is thus held a
few milliseconds past its request at most, never given back early.

Redis failures never break a request: the rate limit fails open and the
concurrency limit falls back to a per-process count; both are logged and
counted in ``trading_redis_errors_total{component="limiter"}``. Without
``REDIS_URL`` both limits are per process (memory storage, local counter).
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, g, request
from flask_limiter import ApplicationLimit, Limiter
from flask_limiter.errors import RateLimitExceeded
from redis import Redis

from service.api import OPEN_BLUEPRINTS
from service.api.errors import handle_service_error
from service.config import Settings
from service.errors import RateLimited, TooManyConcurrentRequests
from service.metrics import RATE_LIMITED
from service.ratelimit import window
from service.ratelimit.leases import LEASE_SECONDS, ConcurrencyLimiter, Slot
from service.ratelimit.window import RateWindow

__all__ = ["CONCURRENCY_KEY_PREFIX", "LEASE_SECONDS", "RATE_STORAGE_PREFIX", "register_limits"]

# limits' strategies keep different Redis types under their keys: a new
# strategy needs a new prefix, else the old keys answer WRONGTYPE.
RATE_KEY_PREFIX = "moving-window-v1"
RATE_STORAGE_PREFIX = "trading:ratelimit"
CONCURRENCY_KEY_PREFIX = "trading:concurrency:v1"
CONCURRENCY_RETRY_AFTER_SECONDS = 1
# The scope of the per-user limit, named in its 429 (``details.scope``).
USER_SCOPE = "user"


def _exempt() -> bool:
    return request.blueprint in OPEN_BLUEPRINTS


def _add_rate_headers(response: Response) -> Response:
    window: RateWindow | None = g.get("rate_window")
    if window is not None:
        response.headers.update(window.headers())
    return response


def _rate_limited_handler(name_scope: bool) -> Callable[[RateLimitExceeded], Response]:
    """The 429 of a rate limit; with several limits (``name_scope``) its
    ``details.scope`` says which one was hit."""

    def rate_limited(exc: RateLimitExceeded) -> Response:
        scope = str(exc.limit.scope)
        RATE_LIMITED.labels("user_rate" if scope == USER_SCOPE else "rate").inc()
        details = {"limit": str(exc.limit.limit)}
        if name_scope:
            details["scope"] = scope
        window: RateWindow | None = g.get("rate_window")
        return handle_service_error(
            RateLimited(details=details, retry_after=window.reset_in() if window else 1)
        )

    return rate_limited


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
    ``g.user_id``). Nothing is registered when ``RATE_LIMIT_ENABLED`` is false.
    """
    if not settings.rate_limit_enabled:
        return
    redis: Redis | None = app.extensions["redis"] if settings.redis_url else None
    client_key = _client_key(settings.rate_limit_scope)

    user_rate = settings.user_rate_limit if settings.auth_mode == "jwt" else None
    if user_rate is not None:
        # A Limiter of its own, whose hook runs before the global one: a request
        # refused for its user takes nothing from everybody else's budget
        # (one Limiter would check its limits in order of their time unit).
        user_limit = ApplicationLimit(user_rate, scope=USER_SCOPE)
        per_user = _limiter(redis, _token_user, user_limit)
        per_user.request_filter(lambda: g.get("user_id") is None)
        per_user.init_app(app)
    concurrency = ConcurrencyLimiter(settings.max_concurrent_requests, redis)
    global_limit = ApplicationLimit(settings.rate_limit, scope=settings.rate_limit_scope)
    shared = _limiter(redis, client_key, global_limit, concurrency)
    shared.request_filter(_exempt)
    # The global hit takes the concurrency slot in its round trip: ask for it first.
    app.before_request(_want_slot(client_key))
    shared.init_app(app)
    app.register_error_handler(RateLimitExceeded, _rate_limited_handler(user_rate is not None))
    app.after_request(_add_rate_headers)

    _register_concurrency_limit(app, concurrency, client_key)


def _limiter(
    redis: Redis | None,
    key: Callable[[], str],
    limit: ApplicationLimit,
    leases: ConcurrencyLimiter | None = None,
) -> Limiter:
    """A flask-limiter ``Limiter`` of one moving-window limit on our window
    storages; with ``leases`` its hits also take the concurrency slots."""
    return Limiter(
        key,
        application_limits=[limit],
        strategy="moving-window",
        storage_uri="trading+redis://" if redis else "trading+memory://",
        storage_options=(
            {
                "connection_pool": redis.connection_pool,  # type: ignore[dict-item]
                "key_prefix": RATE_STORAGE_PREFIX,
                "leases": leases,  # type: ignore[dict-item]
            }
            if redis
            else {}
        ),
        key_prefix=RATE_KEY_PREFIX,
        # flask-limiter's own headers would add Retry-After to admitted
        # responses and read the window back; _add_rate_headers does neither.
        headers_enabled=False,
        # An unforeseen limiter error must not fail the request (Redis errors
        # never get here: the storage fails open and counts them).
        swallow_errors=True,
    )


def _concurrency_key(client_key: Callable[[], str]) -> str:
    return f"{CONCURRENCY_KEY_PREFIX}:{client_key()}"


def _want_slot(client_key: Callable[[], str]) -> Callable[[], None]:
    def want_slot() -> None:
        if request.endpoint is not None and not _exempt():
            window.want_slot(_concurrency_key(client_key))

    return want_slot


def _register_concurrency_limit(
    app: Flask, concurrency: ConcurrencyLimiter, client_key: Callable[[], str]
) -> None:
    """At most ``concurrency.limit`` guarded requests in flight (per bucket of
    ``client_key``). The slot was taken with the rate hit unless Redis failed
    or there is none: then it is taken here, on its own."""

    def take_slot() -> None:
        if request.endpoint is None or _exempt() or "concurrency_slot" in g:
            return
        full = g.pop("concurrency_full", False)
        slot = None if full else concurrency.acquire(_concurrency_key(client_key))
        if slot is None:
            RATE_LIMITED.labels("concurrency").inc()
            raise TooManyConcurrentRequests(
                details={"limit": concurrency.limit},
                retry_after=CONCURRENCY_RETRY_AFTER_SECONDS,
            )
        g.concurrency_slot = slot

    def give_slot(_exc: BaseException | None) -> None:
        slot: Slot | None = g.pop("concurrency_slot", None)
        if slot is not None:
            concurrency.release_later(slot)

    app.before_request(take_slot)
    app.teardown_request(give_slot)


def _token_user() -> str:
    user: str = g.user_id
    return user


def _client_key(scope: str) -> Callable[[], str]:
    """The limits' bucket: one for everybody, or the client's address
    (``X-Forwarded-For`` is trusted through ``TRUSTED_PROXIES``, see create_app)."""
    if scope == "client":
        return lambda: request.remote_addr or "unknown"
    return lambda: "global"
