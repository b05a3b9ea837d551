"""The rate limit's moving window, kept by subclasses of limits' storages.

One Redis round trip per request: the hit also returns the window, so the
``RateLimit-*`` headers need no second call, takes the request's concurrency
slot and first removes the slots this process's earlier requests gave back
(:meth:`~service.ratelimit.leases.ConcurrencyLimiter.release_later`). Redis
errors fail open.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from flask import g, has_app_context
from limits.storage import MemoryStorage, RedisStorage
from redis.connection import Connection
from redis.exceptions import NoScriptError

from service.cache import redis_guard
from service.extensions import ThreadConnections
from service.ratelimit.leases import LIMITER_KEY_SECONDS, TAKE_SLOT_LUA, ConcurrencyLimiter

COMPONENT = "limiter"
_SLOT_WANTED = "concurrency_slot_wanted"

# limits' moving-window hit (same list layout: admission times, newest first),
# which also returns the window it leaves behind. Time is Redis's clock
# (``now``, seconds, from the script's one ``TIME``), so pods with skewed
# clocks still share one window. Entries that have left the window are dropped
# from the tail first (each once: amortised O(1) a hit; a list that has left
# the window whole is unlinked at once), so the list holds exactly the window:
# its length is the count and its tail the oldest entry. The hit is pushed
# first and taken back (``LTRIM``) if it overfills the window: one call fewer
# than counting first on the admitted path.
# Its expiry is set only when the list is created or trimmed (admitted or
# not), to ``lifetime`` (at least the window) plus one window: a hit that
# trims nothing comes at most one window after the last expiry was set (any
# later one finds an entry that has left), so the list still has
# ``lifetime`` to live after every write, and its newest entry leaves the
# window before the list expires.
# Returns {admitted 0|1, entries in the window, oldest entry in the window
# (epoch seconds, as a string)}.
_RATE_HIT_LUA = """
local function rate_hit(key, now, limit, expiry, cost, lifetime)
    local start = now - expiry
    local oldest = redis.call('LINDEX', key, -1)
    local renew = not oldest
    if oldest and tonumber(oldest) < start then
        renew = true
        if tonumber(redis.call('LINDEX', key, 0)) < start then
            redis.call('UNLINK', key)  -- all of it has left (after a quiet spell)
            oldest = false
        else
            repeat
                redis.call('RPOP', key)
                oldest = redis.call('LINDEX', key, -1)
            until tonumber(oldest) >= start
        end
    end
    local stamp = string.format('%.6f', now)
    local stamps = {}
    for i = 1, cost do
        stamps[i] = stamp
    end
    local entries = redis.call('LPUSH', key, unpack(stamps))
    if renew then
        redis.call('EXPIRE', key, math.max(expiry, lifetime) + expiry)
    end
    if entries > limit then
        redis.call('LTRIM', key, cost, -1)
        return {0, entries - cost, oldest or stamp}
    end
    return {1, entries, oldest or stamp}
end
"""
# KEYS[1]: the rate window; KEYS[2], when given: the concurrency limit's
# holders, where an admitted hit also takes a slot (one round trip for both).
# ARGV: 1 when this is the resend of a hit whose reply was lost (else 0),
# limit, expiry (seconds), cost, key lifetime (seconds), then with KEYS[2]
# take_slot's holder, limit, lease and key lifetime (ms), then the holders this
# process has given back since (removed first, hit or not).
# Returns rate_hit's three values, then with KEYS[2] the slot: 1 taken, 0 all
# held, -1 not tried (the hit was refused). A resend whose holder already
# holds a slot was admitted by the lost run: it is answered as that run
# answered, without a second hit (which the first one's entry could refuse).
_RATE_HIT = (
    _RATE_HIT_LUA
    + TAKE_SLOT_LUA
    + """
local clock = redis.call('TIME')
local seconds, micros = tonumber(clock[1]), tonumber(clock[2])
local now = seconds + micros / 1000000
if KEYS[2] and ARGV[1] == '1' and redis.call('ZSCORE', KEYS[2], ARGV[6]) then
    local oldest = redis.call('LINDEX', KEYS[1], -1)
    return {1, redis.call('LLEN', KEYS[1]), oldest or string.format('%.6f', now), 1}
end
if KEYS[2] and #ARGV > 9 then
    redis.call('ZREM', KEYS[2], unpack(ARGV, 10))
end
local window = rate_hit(KEYS[1], now,
    tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
if KEYS[2] then
    window[4] = -1
    if window[1] == 1 then
        window[4] = take_slot(KEYS[2], seconds * 1000 + math.floor(micros / 1000),
            ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9])
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

    Its hits go on each thread's own connection, of ``threads`` (the app's,
    so that a request thread holds one Redis connection for everything);
    the storage's own client runs limits' other commands.

    With ``leases`` (the concurrency limit, passed through
    ``storage_from_string``'s options), a hit made for a request that wants a slot
    (:func:`want_slot`) takes it in the same script: the request's
    ``g.concurrency_slot`` is then the slot, or ``g.concurrency_full`` is set.
    """

    def __init__(
        self,
        uri: str,
        threads: ThreadConnections,
        leases: ConcurrencyLimiter | None = None,
        **options: Any,
    ) -> None:
        self.leases = leases
        self._threads = threads
        super().__init__(uri, **options)

    def initialize_storage(self, uri: str) -> None:
        super().initialize_storage(uri)
        self._hit = self.storage.register_script(_RATE_HIT)

    def _run_hit(self, keys: list[str], args: list[str | int]) -> list[Any]:
        # EVALSHA on the thread's own connection: redis-py's client layers
        # (pool, command lookup, retry wrapper, reply callbacks) cost more
        # than the script. Sent again on a new connection if a kept one was
        # dropped (``resent``): should the lost run have admitted the hit,
        # the script answers as it did.
        def hit(connection: Connection, resent: bool) -> list[Any]:
            flagged = [int(resent), *args]
            try:
                return _send_and_read(connection, "EVALSHA", self._hit.sha, keys, flagged)
            except NoScriptError:  # a restarted Redis: EVAL loads the script again
                return _send_and_read(connection, "EVAL", self._hit.script, keys, flagged)

        return self._threads.run(hit)

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
            if leases and slot_key:
                # Not removed: the keeper tries again, with the holder the
                # script may have added before its reply was lost.
                leases.requeue_released(slot_key, [*released, holder])
            return True  # the slot is then taken on its own (fail open)
        _report_window(limit, int(entries), float(oldest), expiry)
        if leases and slot_key and slot == [1]:
            g.concurrency_slot = leases.adopt(slot_key, holder)
        elif slot == [0]:
            g.concurrency_full = True
        return bool(admitted)


def _send_and_read(
    connection: Connection, command: str, script: str, keys: list[str], args: list[str | int]
) -> list[Any]:
    connection.send_command(command, script, len(keys), *keys, *args)
    reply: list[Any] = connection.read_response()
    return reply


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
