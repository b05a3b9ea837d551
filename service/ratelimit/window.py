"""The rate limit's moving window, kept by subclasses of limits' storages.

One Redis round trip per request: the hit also returns the window, so the
``RateLimit-*`` headers need no second call, takes the request's concurrency
slot and first removes the slots this process's earlier requests gave back
(:meth:`~service.ratelimit.leases.ConcurrencyLimiter.release_later`). Redis
errors fail open.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from flask import g, has_app_context
from limits.storage import MemoryStorage, RedisStorage
from redis import Redis
from redis.exceptions import NoScriptError

from service.cache import redis_guard
from service.ratelimit.leases import LIMITER_KEY_SECONDS, TAKE_SLOT_LUA, ConcurrencyLimiter

COMPONENT = "limiter"
_SLOT_WANTED = "concurrency_slot_wanted"

# limits' moving-window hit (same list layout: admission times, newest first),
# which also returns the window it leaves behind. Time is Redis's clock, so
# pods with skewed clocks still share one window. Entries that have left the
# window are dropped from the tail first (each once: amortised O(1) a hit; a
# list that has left the window whole is unlinked at once), so the list
# holds exactly the window: its length is the count and its tail
# the oldest entry, where a search of a list of ``limit`` entries cost tens of
# microseconds with a large limit.
# Returns {admitted 0|1, entries in the window, oldest entry in the window
# (epoch seconds, as a string)}. The list lives ``lifetime`` seconds after its
# last write (at least the window).
_RATE_HIT_LUA = """
local function rate_hit(key, limit, expiry, cost, lifetime)
    local clock = redis.call('TIME')
    local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
    local start = now - expiry
    local newest = redis.call('LINDEX', key, 0)
    if newest and tonumber(newest) < start then
        redis.call('UNLINK', key)  -- all of it has left (after a quiet spell)
    end
    local oldest = redis.call('LINDEX', key, -1)
    while oldest and tonumber(oldest) < start do
        redis.call('RPOP', key)
        oldest = redis.call('LINDEX', key, -1)
    end
    local entries = redis.call('LLEN', key)
    local admitted = 0
    if entries + cost <= limit then
        local stamp = string.format('%.6f', now)
        for _ = 1, cost do
            redis.call('LPUSH', key, stamp)
        end
        redis.call('EXPIRE', key, math.max(expiry, lifetime))
        admitted, entries = 1, entries + cost
        oldest = oldest or stamp
    end
    return {admitted, entries, oldest or string.format('%.6f', now)}
end
"""
# KEYS[1]: the rate window; KEYS[2], when given: the concurrency limit's
# holders, where an admitted hit also takes a slot (one round trip for both).
# ARGV: limit, expiry (seconds), cost, key lifetime (seconds), then with
# KEYS[2] take_slot's holder, limit, lease and key lifetime (ms), then the
# holders this process has given back since (removed first, hit or not).
# Returns rate_hit's three values, then with KEYS[2] the slot: 1 taken, 0 all
# held, -1 not tried (the hit was refused).
_RATE_HIT = (
    _RATE_HIT_LUA
    + TAKE_SLOT_LUA
    + """
if KEYS[2] and #ARGV > 8 then
    redis.call('ZREM', KEYS[2], unpack(ARGV, 9))
end
local window = rate_hit(
    KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if KEYS[2] then
    window[4] = -1
    if window[1] == 1 then
        window[4] = take_slot(KEYS[2], ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8])
    end
end
return window
"""
)


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
    # The storage hands the window to the request through ``g``: reading it
    # back through limits' strategy would take a second Redis call. Of several limits
    # (per user, then global) the one with the fewest places left is reported.
    if has_app_context():
        window = RateWindow(limit, max(0, limit - entries), oldest + expiry)
        current: RateWindow | None = g.get("rate_window")
        if current is None or window.remaining <= current.remaining:
            g.rate_window = window


class SharedWindowStorage(RedisStorage):
    """limits' Redis storage whose moving-window hit
    reports the window in the same round trip and fails open on Redis errors.

    With ``leases`` (the concurrency limit, passed through
    ``storage_from_string``'s options), a hit made for a request that wants a slot
    (:func:`want_slot`) takes it in the same script: the request's
    ``g.concurrency_slot`` is then the slot, or ``g.concurrency_full`` is set.
    """

    def __init__(self, uri: str, leases: ConcurrencyLimiter | None = None, **options: Any) -> None:
        self.leases = leases
        super().__init__(uri, **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._hit = self.storage.register_script(_RATE_HIT)
        self._threads = threading.local()

    def _client(self) -> Redis:
        """This thread's client of one connection (from the shared pool, kept
        for the thread's life): a hit then skips the pool's checkout and
        return, a third of redis-py's cost per call."""
        client: Redis | None = getattr(self._threads, "client", None)
        if client is None:
            client = self._threads.client = Redis(
                connection_pool=self.storage.connection_pool, single_connection_client=True
            )
        return client

    def _run_hit(self, keys: list[str], args: list[str | int]) -> list[Any]:
        # EVALSHA itself: redis-py's ``Script.__call__`` costs an import and a
        # Protocol ``isinstance`` per call (3 % of a cached listing's CPU).
        client = self._client()
        try:
            reply: list[Any] = client.evalsha(self._hit.sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted Redis: the script loads it again
            reply = self._hit(keys, args, client=client)
        return reply

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Admit (``True``) or refuse one hit; ``True`` when Redis fails."""
        keys: list[str] = [self.prefixed_key(key)]
        args: list[str | int] = [limit, expiry, amount, LIMITER_KEY_SECONDS]
        leases = self.leases if has_app_context() else None
        slot_key: str | None = g.pop(_SLOT_WANTED, None) if leases else None
        holder, released = "", []
        if leases and slot_key:
            holder, released = ConcurrencyLimiter.new_holder(), leases.take_released(slot_key)
            keys.append(slot_key)
            args += leases.take_args(holder)
            args += released
        with redis_guard(COMPONENT) as guard:
            admitted, entries, oldest, *slot = self._run_hit(keys, args)
        if guard.failed:
            if leases and slot_key:  # not removed: the keeper tries again
                leases.requeue_released(slot_key, released)
            return True  # the slot is then taken on its own (fail open)
        _report_window(limit, int(entries), float(oldest), expiry)
        if leases and slot_key and slot == [1]:
            g.concurrency_slot = leases.adopt(slot_key, holder)
        elif slot == [0]:
            g.concurrency_full = True
        return bool(admitted)


def want_slot(key: str) -> None:
    """Ask the rate limit's hit for this request to take a concurrency slot of
    ``key`` in the same round trip (a no-op for storages without ``leases``)."""
    g.setdefault(_SLOT_WANTED, key)


class LocalWindowStorage(MemoryStorage):
    """limits' memory storage (one process) that reports
    the window of each hit like :class:`SharedWindowStorage`."""

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        admitted = super().acquire_entry(key, limit, expiry, amount)
        oldest, entries = self.get_moving_window(key, limit, expiry)
        _report_window(limit, entries, oldest, expiry)
        return admitted
