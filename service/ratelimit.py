"""Global rate and concurrency limits (DESIGN §4), shared by every worker and pod.

Every endpoint except those of :data:`EXEMPT_BLUEPRINTS` (probes, metrics, API
docs) is guarded by two limits, so a feature blueprint is limited without
doing anything:

* **rate** — flask-limiter's application-wide limit ``RATE_LIMIT`` on a
  *moving* window: an exact log of admissions, so a burst cannot double the
  limit across a window edge. The log lives in Redis (one key for everybody,
  or one per client address with ``RATE_LIMIT_SCOPE=client``).
* **concurrency** — at most ``MAX_CONCURRENT_REQUESTS`` in flight: a counting
  semaphore in Redis whose slots are *leases* (:class:`ConcurrencyLimiter`).
  A process renews the leases of its running requests from a background
  thread; a process that dies stops renewing and its slots come back within
  :data:`LEASE_SECONDS`.

Cost per request: one Redis round trip for the rate limit (the hit also
returns the window, so the ``RateLimit-*`` headers need no second one), one to
take a slot and one to give it back.

Redis failures never break a request: the rate limit fails open and the
concurrency limit falls back to a per-process count; both are logged and
counted in ``trading_redis_errors_total{component="limiter"}``. Without
``REDIS_URL`` both limits are per process (memory storage, local counter).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, g, has_app_context, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits.storage import MemoryStorage, RedisStorage
from redis import Redis
from redis.exceptions import RedisError

from service.api.errors import handle_service_error
from service.cache import record_failure
from service.config import Settings
from service.errors import RateLimited, TooManyConcurrentRequests
from service.metrics import RATE_LIMITED

COMPONENT = "limiter"
# Liveness/readiness probes, Prometheus scrapes and the API docs must answer
# however saturated the API is.
EXEMPT_BLUEPRINTS = frozenset({"health", "api-docs", "api-docs-assets"})
# limits' strategies keep different Redis types under their keys: a new
# strategy needs a new prefix, else the old keys answer WRONGTYPE.
RATE_KEY_PREFIX = "moving-window-v1"
RATE_STORAGE_PREFIX = "trading:ratelimit"
CONCURRENCY_KEY_PREFIX = "trading:concurrency:v1"
# A slot held by a dead process is free again after at most this long.
LEASE_SECONDS = 3.0
CONCURRENCY_RETRY_AFTER_SECONDS = 1

_HOST = socket.gethostname()

# limits' moving-window hit (same list layout: admission times, newest first),
# which also returns the window it leaves behind. Time is Redis's clock, so
# pods with skewed clocks still share one window.
# ARGV: limit, expiry (seconds), cost. Returns {admitted 0|1, entries in the
# window, oldest entry in the window (epoch seconds, as a string)}.
_RATE_HIT = """
local limit, expiry, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local start = now - expiry
local admitted = 0
if cost <= limit then
    local boundary = redis.call('LINDEX', KEYS[1], limit - cost)
    if not boundary or tonumber(boundary) < start then
        local stamp = string.format('%.6f', now)
        for _ = 1, cost do
            redis.call('LPUSH', KEYS[1], stamp)
        end
        redis.call('LTRIM', KEYS[1], 0, limit - 1)
        redis.call('EXPIRE', KEYS[1], expiry)
        admitted = 1
    end
end
local low, high, last = 0, redis.call('LLEN', KEYS[1]) - 1, -1
while low <= high do
    local mid = math.floor((low + high) / 2)
    if tonumber(redis.call('LINDEX', KEYS[1], mid)) >= start then
        last, low = mid, mid + 1
    else
        high = mid - 1
    end
end
if last < 0 then
    return {admitted, 0, string.format('%.6f', now)}
end
return {admitted, last + 1, redis.call('LINDEX', KEYS[1], last)}
"""

# KEYS[1]: holder ids scored by lease expiry (ms, Redis clock).
# ARGV: holder, limit, lease (ms). Expired leases are dropped first.
_SLOT_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[i]: the set of holder ARGV[i + 1]; ARGV[1]: lease (ms). Only leases
# still present are extended (XX): an expired one stays given back.
_SLOT_RENEW = """
local clock = redis.call('TIME')
local expires = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
    + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, 'XX', expires, ARGV[i + 1])
    redis.call('PEXPIRE', key, ARGV[1])
end
return 0
"""


# --- rate -------------------------------------------------------------------


@dataclass(frozen=True)
class RateWindow:
    """The moving window as the current request's hit left it."""

    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest entry leaves and a place frees

    def reset_in(self) -> int:
        """Whole seconds until a place frees (0 when one is free now)."""
        return max(0, math.ceil(self.reset_at - time.time()))

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` response headers (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_in()),
        }


def _report_window(limit: int, entries: int, oldest: float, expiry: int) -> None:
    # The storage hands the window to the request through ``g``: flask-limiter
    # would otherwise read it back with a second Redis call.
    if has_app_context():
        g.rate_window = RateWindow(limit, max(0, limit - entries), oldest + expiry)


class SharedWindowStorage(RedisStorage):
    """limits' Redis storage (``trading+redis://``) whose moving-window hit
    reports the window in the same round trip and fails open on Redis errors."""

    STORAGE_SCHEME = ["trading+redis"]  # noqa: RUF012 (limits' registry reads the list)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._hit = self.storage.register_script(_RATE_HIT)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Admit (``True``) or refuse one hit; ``True`` when Redis fails."""
        try:
            admitted, entries, oldest = self._hit([self.prefixed_key(key)], [limit, expiry, amount])
        except RedisError as exc:
            record_failure(COMPONENT, exc)
            return True
        _report_window(limit, int(entries), float(oldest), expiry)
        return bool(admitted)


class LocalWindowStorage(MemoryStorage):
    """limits' memory storage (``trading+memory://``, one process) that reports
    the window of each hit like :class:`SharedWindowStorage`."""

    STORAGE_SCHEME = ["trading+memory"]  # noqa: RUF012 (limits' registry reads the list)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        admitted = super().acquire_entry(key, limit, expiry, amount)
        oldest, entries = self.get_moving_window(key, limit, expiry)
        _report_window(limit, entries, oldest, expiry)
        return admitted


# --- concurrency ------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A place taken in the concurrency limit, to be given back with
    :meth:`ConcurrencyLimiter.release`."""

    key: str
    holder: str | None  # member of the Redis set; None: counted in this process


class ConcurrencyLimiter:
    """A counting semaphore: at most ``limit`` slots held at once per key.

    With ``redis`` the slots are shared by every process: per key a sorted
    set of holder ids (``host:pid:random``) scored by lease expiry on Redis's
    clock. Taking a slot drops expired leases, counts and adds in one Lua
    script; giving it back is one ``ZREM``. While a process holds slots a
    daemon thread renews their leases every third of the lease, so only a
    process that stopped running loses them.

    Without ``redis``, or for a call during which Redis fails, slots are
    counted in this process against the same ``limit``.
    """

    def __init__(
        self, limit: int, redis: Redis | None, *, lease_seconds: float = LEASE_SECONDS
    ) -> None:
        self.limit = limit
        self._redis = redis
        self._lease_ms = int(lease_seconds * 1000)
        self._renew_every = lease_seconds / 3
        self._lock = threading.Lock()
        self._local: dict[str, int] = {}
        self._held: dict[str, str] = {}  # holder -> key, slots this process holds in Redis
        self._renewer: threading.Thread | None = None
        if redis is not None:
            self._acquire_script = redis.register_script(_SLOT_ACQUIRE)
            self._renew_script = redis.register_script(_SLOT_RENEW)

    def acquire(self, key: str) -> Slot | None:
        """Take a slot of ``key``; ``None`` when all ``limit`` are held."""
        if self._redis is not None:
            holder = f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex}"
            try:
                taken = self._acquire_script([key], [holder, self.limit, self._lease_ms])
            except RedisError as exc:
                record_failure(COMPONENT, exc)
            else:
                if not taken:
                    return None
                self._hold(holder, key)
                return Slot(key, holder)
        with self._lock:
            held = self._local.get(key, 0)
            if held >= self.limit:
                return None
            self._local[key] = held + 1
        return Slot(key, None)

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back. If Redis fails it is freed when its lease ends."""
        with self._lock:
            if slot.holder is None:
                self._local[slot.key] -= 1
                if not self._local[slot.key]:
                    del self._local[slot.key]
                return
            del self._held[slot.holder]
        try:
            assert self._redis is not None  # a Redis slot came from Redis
            self._redis.zrem(slot.key, slot.holder)
        except RedisError as exc:
            record_failure(COMPONENT, exc)

    def renew_leases(self) -> None:
        """Extend the lease of every slot this process holds, in one round trip."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        try:
            self._renew_script(
                [key for _, key in held], [self._lease_ms, *(holder for holder, _ in held)]
            )
        except RedisError as exc:
            record_failure(COMPONENT, exc)

    def _hold(self, holder: str, key: str) -> None:
        with self._lock:
            self._held[holder] = key
            # Not alive also after a fork: each process runs its own renewer.
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(
                    target=self._renew_while_held, name="lease-renewer", daemon=True
                )
                self._renewer.start()

    def _renew_while_held(self) -> None:
        while True:
            time.sleep(self._renew_every)
            with self._lock:
                if not self._held:
                    self._renewer = None
                    return
            self.renew_leases()


# --- wiring -----------------------------------------------------------------


def _exempt() -> bool:
    return request.blueprint in EXEMPT_BLUEPRINTS


def _add_rate_headers(response: Response) -> Response:
    window: RateWindow | None = g.get("rate_window")
    if window is not None:
        response.headers.update(window.headers())
    return response


def _rate_limited(exc: RateLimitExceeded) -> Response:
    RATE_LIMITED.labels("rate").inc()
    window: RateWindow | None = g.get("rate_window")
    return handle_service_error(
        RateLimited(
            details={"limit": str(exc.limit.limit)},
            retry_after=window.reset_in() if window else 1,
        )
    )


def register_limits(app: Flask, settings: Settings) -> None:
    """Guard every endpoint outside :data:`EXEMPT_BLUEPRINTS` with both limits.

    Register after the request-id and request-metrics hooks (so a 429 carries
    a request id and is counted) and after the Redis client. Excess requests
    get 429 with the error envelope (``rate_limited`` or
    ``too_many_concurrent_requests``) and ``Retry-After``; every response of
    a guarded endpoint carries ``RateLimit-Limit``/``-Remaining``/``-Reset``
    when the rate window is known (not while Redis fails). Nothing is
    registered when ``RATE_LIMIT_ENABLED`` is false.
    """
    if not settings.rate_limit_enabled:
        return
    redis: Redis | None = app.extensions["redis"] if settings.redis_url else None
    client_key = _client_key(settings.rate_limit_scope)
    limiter = Limiter(
        client_key,
        application_limits=[settings.rate_limit],
        strategy="moving-window",
        storage_uri="trading+redis://" if redis else "trading+memory://",
        storage_options=(
            {"connection_pool": redis.connection_pool, "key_prefix": RATE_STORAGE_PREFIX}  # type: ignore[dict-item]
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
    limiter.request_filter(_exempt)
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    app.after_request(_add_rate_headers)

    concurrency = ConcurrencyLimiter(settings.max_concurrent_requests, redis)

    def take_slot() -> None:
        if request.endpoint is None or _exempt():
            return
        slot = concurrency.acquire(f"{CONCURRENCY_KEY_PREFIX}:{client_key()}")
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
            concurrency.release(slot)

    app.before_request(take_slot)
    app.teardown_request(give_slot)


def _client_key(scope: str) -> Callable[[], str]:
    """The limits' bucket: one for everybody, or the client's address
    (``X-Forwarded-For`` is trusted through ``TRUSTED_PROXIES``, see create_app)."""
    if scope == "client":
        return lambda: request.remote_addr or "unknown"
    return lambda: "global"
