"""The concurrency limit: a counting semaphore in Redis whose slots are leases.

A process renews the leases of its running requests from a background thread;
a process that dies stops renewing and its slots come back within
:data:`LEASE_SECONDS`. Redis errors fall back to a per-process count.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass

from redis import Redis

from service.cache import redis_guard
from service.extensions import thread_connections
from service.ids import new_id

COMPONENT = "limiter"
# Every limiter key lives at least this long after its last write (4 days),
# longer than any cache key (the longest, the catalogue, 3 days): under the
# dev Redis's ``volatile-ttl`` eviction, which evicts the keys nearest their
# expiry first, cache keys go before limiter keys (README, "Redis memory").
# Entries are judged by their time stamps, never by the key's expiry.
LIMITER_KEY_SECONDS = 4 * 86_400
# A slot held by a dead process is free again after at most this long.
LEASE_SECONDS = 3.0
# A slot given back with ``release_later`` waits at most this long (plus one
# round trip) for the next rate hit of its process to remove it; then the
# lease keeper removes every one still waiting with one pipelined ``ZREM``.
RELEASE_DELAY_SECONDS = 0.002
# While slots come back, the keeper keeps waking on the release grid for this
# many ticks after the last one (a request then never has to wake it).
BUSY_TICKS = 5

_HOST = socket.gethostname()

# Takes a lease for ``holder`` in the sorted set ``key`` (holder ids scored by
# lease expiry, ms, Redis clock) unless ``limit`` leases are held; 1 taken, 0
# full. ``now`` is Redis's clock in ms (the caller's ``TIME``). Expired leases
# (of dead processes) are dropped only when they would fill the set, so a
# set with room costs one count. The set lives ``lifetime`` ms after its last
# write. A Lua function, so that the rate limit's script can take the slot in
# the same round trip as its hit.
TAKE_SLOT_LUA = """
local function take_slot(key, now, holder, limit, lease, lifetime)
    if redis.call('ZCARD', key) >= limit then
        redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
        if redis.call('ZCARD', key) >= limit then
            return 0
        end
    end
    redis.call('ZADD', key, now + lease, holder)
    redis.call('PEXPIRE', key, lifetime)
    return 1
end
"""
# KEYS[1]: the holders' set; ARGV: holder, limit, lease (ms), key lifetime (ms).
_SLOT_ACQUIRE = (
    TAKE_SLOT_LUA
    + """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
return take_slot(KEYS[1], now, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
"""
)

# KEYS[i]: the set of holder ARGV[i + 2]; ARGV[1]: lease (ms), ARGV[2]: key
# lifetime (ms). Only leases still present are extended (XX): one swept after
# it expired stays given back (one expired but not yet swept is held again:
# its request is still running).
_SLOT_RENEW = """
local clock = redis.call('TIME')
local expires = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
    + tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, 'XX', expires, ARGV[i + 2])
    redis.call('PEXPIRE', key, ARGV[2])
end
return 0
"""


@dataclass(frozen=True)
class Slot:
    """A place taken in the concurrency limit, to be given back with
    :meth:`ConcurrencyLimiter.release`."""

    key: str
    holder: str | None  # member of the Redis set; None: counted in this process


class ConcurrencyLimiter:
    """A counting semaphore: at most ``limit`` slots held at once per key.

    With ``redis`` the slots are shared by every process: per key a sorted
    set of holder ids (``host:pid:id``, :func:`service.ids.new_id`) scored by
    lease expiry on Redis's clock. Taking a slot counts and adds in one Lua
    script (sweeping expired leases first when the set looks full); giving
    it back is one ``ZREM``. While a process holds slots a
    daemon thread (the lease keeper) renews their leases every third of the
    lease, so only a process that stopped running loses them. The rate
    limit's storage takes the slot in its own round trip
    (:mod:`service.ratelimit.window`) and hands it here with :meth:`adopt`;
    a request gives it back with :meth:`release_later`, off its path: the
    next hit of the process removes it in its own script
    (:meth:`take_released`), else the keeper within
    :data:`RELEASE_DELAY_SECONDS`.

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
        # Wakes the lease keeper when a first slot is queued for removal.
        self._duty = threading.Condition(self._lock)
        self._local: dict[str, int] = {}
        self._held: dict[str, str] = {}  # holder -> key, slots this process holds in Redis
        self._released: dict[str, list[str]] = {}  # key -> holders given back, still in Redis
        self._flush_at: float | None = None  # monotonic time by which they are removed
        self._keeper_wakes_at = 0.0  # monotonic time the keeper's current wait ends
        self._given_back = False  # a slot was queued since the keeper last looked
        self._keeper: threading.Thread | None = None
        if redis is not None:
            self._acquire_script = redis.register_script(_SLOT_ACQUIRE)
            self._renew_script = redis.register_script(_SLOT_RENEW)

    def acquire(self, key: str) -> Slot | None:
        """Take a slot of ``key``; ``None`` when all ``limit`` are held."""
        if self._redis is not None:
            holder = self.new_holder()
            taken = None
            with redis_guard(COMPONENT):
                taken = self._acquire_script([key], self.take_args(holder))
            if taken is not None:
                return self.adopt(key, holder) if taken else None
        with self._lock:
            held = self._local.get(key, 0)
            if held >= self.limit:
                return None
            self._local[key] = held + 1
        return Slot(key, None)

    @staticmethod
    def new_holder() -> str:
        """A holder id for a slot about to be taken in Redis."""
        return f"{_HOST}:{os.getpid()}:{new_id()}"

    def take_args(self, holder: str) -> list[str | int]:
        """The arguments of :data:`TAKE_SLOT_LUA`'s ``take_slot`` after the key:
        ``holder``, the limit, the lease and the key's lifetime (ms)."""
        return [holder, self.limit, self._lease_ms, LIMITER_KEY_SECONDS * 1000]

    def adopt(self, key: str, holder: str) -> Slot:
        """The slot ``holder`` has just taken in Redis (by :meth:`acquire`, or
        by another script running :data:`TAKE_SLOT_LUA`): renewed from now on,
        to be given back with :meth:`release`."""
        self._hold(holder, key)
        return Slot(key, holder)

    def release(self, slot: Slot) -> None:
        """Give ``slot`` back. If Redis fails it is freed when its lease ends."""
        with self._lock:
            if slot.holder is None:
                self._local[slot.key] -= 1
                if not self._local[slot.key]:
                    del self._local[slot.key]
                return
            del self._held[slot.holder]
        assert self._redis is not None  # a Redis slot came from Redis
        with redis_guard(COMPONENT):
            self._redis.zrem(slot.key, slot.holder)

    def release_later(self, slot: Slot) -> None:
        """Give ``slot`` back without a round trip of its own: it is removed
        by the next hit of this process that takes a slot of the same key
        (:meth:`take_released`), else within :data:`RELEASE_DELAY_SECONDS`
        by the lease keeper. It is no longer renewed, so if Redis fails it is
        freed when its lease ends."""
        if slot.holder is None:
            self.release(slot)
            return
        with self._lock:  # the keeper runs: it stops only with nothing held or queued
            del self._held[slot.holder]
            self._queue(slot.key, [slot.holder])

    def take_released(self, key: str) -> list[str]:
        """The holders of ``key`` given back with :meth:`release_later` and not
        yet removed; the caller removes them from Redis (before it counts)."""
        with self._lock:
            holders = self._released.pop(key, [])
            if not self._released:
                self._flush_at = None
            return holders

    def requeue_released(self, key: str, holders: list[str]) -> None:
        """Queue for removal again the ``holders`` :meth:`take_released` gave
        out, when the script that was to remove them failed (with the holder
        it may have added before its reply was lost)."""
        if holders:
            with self._lock:
                self._queue(key, holders)

    def flush_released(self) -> None:
        """Remove every holder given back with :meth:`release_later` and not
        yet removed, in one round trip."""
        with self._lock:
            released, self._released = self._released, {}
            self._flush_at = None
        if not released:
            return
        assert self._redis is not None  # only Redis slots are queued
        with redis_guard(COMPONENT):
            thread_connections(self._redis).pipeline(
                [("ZREM", key, *holders) for key, holders in released.items()]
            )

    def renew_leases(self) -> None:
        """Extend the lease of every slot this process holds, in one round trip."""
        with self._lock:
            held = list(self._held.items())
        if not held:
            return
        with redis_guard(COMPONENT):
            self._renew_script(
                [key for _, key in held],
                [self._lease_ms, LIMITER_KEY_SECONDS * 1000, *(holder for holder, _ in held)],
            )

    def _hold(self, holder: str, key: str) -> None:
        with self._lock:
            self._held[holder] = key
            # Not alive also after a fork: each process runs its own keeper.
            if self._keeper is None or not self._keeper.is_alive():
                self._keeper = threading.Thread(
                    target=self._keep_leases, name="lease-keeper", daemon=True
                )
                self._keeper.start()

    def _queue(self, key: str, holders: list[str]) -> None:
        """(Lock held.) Queue ``holders`` for removal; the first one queued
        sets the time of the removal, and wakes the keeper only if it sleeps
        past that time.

        Removals fall on a fixed grid of RELEASE_DELAY_SECONDS, so a slot
        waits 0 to RELEASE_DELAY_SECONDS (half on average) for a hit to take
        it along. A fixed wait after each first release would keep every slot
        the whole delay, and often make the keeper want the GIL just as the
        same request's post-response work holds it (a listing's pre-caching):
        the slot then outlived the response by milliseconds more."""
        self._released.setdefault(key, []).extend(holders)
        self._given_back = True
        if self._flush_at is None:
            self._flush_at = _next_tick(time.monotonic())
            if self._keeper_wakes_at > self._flush_at:
                # Only a keeper asleep until later needs waking: while slots
                # come and go it wakes on the grid anyway (see _wait_for_duty);
                # a wake-up from each request cost 6-12 % of a cached listing's CPU.
                self._duty.notify()

    def _keep_leases(self) -> None:
        """Remove the holders given back that no hit has removed, at most
        RELEASE_DELAY_SECONDS after the first of them was queued (see
        :meth:`_queue`); renew the leases held every third of a lease. Ends
        at a renewal with neither left. It sleeps until its next duty; while
        slots keep coming back it wakes on the release grid, so that requests
        need not wake it (see :meth:`_wait_for_duty`)."""
        renew_at = time.monotonic() + self._renew_every
        while True:
            with self._lock:
                flush = self._wait_for_duty(renew_at)
                if not flush and not self._held and not self._released:
                    self._keeper = None
                    return
            if flush:
                self.flush_released()
                continue
            renew_at = time.monotonic() + self._renew_every
            self.renew_leases()

    def _wait_for_duty(self, renew_at: float) -> bool:
        """(Lock held.) Wait until a removal is due (``True``) or ``renew_at``
        has come (``False``). While slots are given back, and for
        BUSY_TICKS ticks after the last one, it wakes on every tick of the
        release grid, whether or not a slot is held meanwhile (between two
        requests of a busy worker often none is: leaving the grid then cost
        a wake-up per request, 4 % of a cached listing's CPU under load);
        otherwise only for its duties (a request that queues a slot then
        wakes it, see :meth:`_queue`)."""
        idle = 0
        while True:
            now = time.monotonic()
            if self._flush_at is not None and now >= self._flush_at:
                return True
            if now >= renew_at:
                return False
            if self._flush_at is not None:
                due = min(renew_at, self._flush_at)
            elif self._given_back or idle < BUSY_TICKS:
                # Slots are coming back (hits took them along): stay on the
                # grid a few ticks, so that the next one needs no wake-up.
                idle = 0 if self._given_back else idle + 1
                due = min(renew_at, _next_tick(now))
            else:
                due = renew_at
            self._given_back = False
            self._keeper_wakes_at = due
            self._duty.wait(due - now)


def _next_tick(now: float) -> float:
    """The first tick of the release grid (every RELEASE_DELAY_SECONDS of the
    monotonic clock) after ``now``."""
    return (now // RELEASE_DELAY_SECONDS + 1) * RELEASE_DELAY_SECONDS
