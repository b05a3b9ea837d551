"""The rate limit's moving window, kept by limits' storages (flask-limiter's
storage layer, extended through its documented ``STORAGE_SCHEME`` registry).

One Redis round trip per request: the hit also returns the window, so the
``RateLimit-*`` headers need no second call. Redis errors fail open.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from flask import g, has_app_context
from limits.storage import MemoryStorage, RedisStorage

from service.cache import redis_guard

COMPONENT = "limiter"
# Every limiter key lives at least this long after its last write (4 days),
# longer than any cache key (the longest, the catalogue, 3 days): under the
# dev Redis's ``volatile-ttl`` eviction, which evicts the keys nearest their
# expiry first, cache keys go before limiter keys (README, "Redis memory").
# Entries are judged by their time stamps, never by the key's expiry.
LIMITER_KEY_SECONDS = 4 * 86_400

# limits' moving-window hit (same list layout: admission times, newest first),
# which also returns the window it leaves behind. Time is Redis's clock, so
# pods with skewed clocks still share one window.
# ARGV: limit, expiry (seconds), cost, key lifetime (seconds). Returns {admitted 0|1, entries in the
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
        redis.call('EXPIRE', KEYS[1], math.max(expiry, tonumber(ARGV[4])))
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
    # would otherwise read it back with a second Redis call. Of several limits
    # (per user, then global) the one with the fewest places left is reported.
    if has_app_context():
        window = RateWindow(limit, max(0, limit - entries), oldest + expiry)
        current: RateWindow | None = g.get("rate_window")
        if current is None or window.remaining <= current.remaining:
            g.rate_window = window


class SharedWindowStorage(RedisStorage):
    """limits' Redis storage (``trading+redis://``) whose moving-window hit
    reports the window in the same round trip and fails open on Redis errors."""

    STORAGE_SCHEME = ["trading+redis"]  # noqa: RUF012 (limits' registry reads the list)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._hit = self.storage.register_script(_RATE_HIT)

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Admit (``True``) or refuse one hit; ``True`` when Redis fails."""
        with redis_guard(COMPONENT) as guard:
            admitted, entries, oldest = self._hit(
                [self.prefixed_key(key)], [limit, expiry, amount, LIMITER_KEY_SECONDS]
            )
        if guard.failed:
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
