"""The lease keeper of the concurrency limit (issue 17): it sleeps until a duty
is due, a removal of slots given back or a renewal of the leases held, and
still does both on time. Polling every few milliseconds cost a buy more CPU
than all its SQL."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from service.ratelimit import leases
from service.ratelimit.leases import ConcurrencyLimiter
from tests.unit.test_ratelimit import KEY, RELEASED_WITHIN

# Their slots must come back within milliseconds (RELEASED_WITHIN).
pytestmark = pytest.mark.usefixtures("no_pending_collection")


class _Counting(ConcurrencyLimiter):
    """Counts the keeper's removals and renewals."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.flushes = 0
        self.renewals = 0

    def flush_released(self) -> None:
        self.flushes += 1
        super().flush_released()

    def renew_leases(self) -> None:
        self.renewals += 1
        super().renew_leases()


def test_the_keeper_sleeps_while_nothing_is_due(redis_client: redis.Redis) -> None:
    limiter = _Counting(2, redis_client, lease_seconds=60)  # renewals every 20 s
    slot = limiter.acquire(KEY)
    assert slot is not None
    time.sleep(0.3)  # a request in flight
    assert (limiter.flushes, limiter.renewals) == (0, 0)

    limiter.release_later(slot)
    deadline = time.monotonic() + RELEASED_WITHIN
    while redis_client.zcard(KEY) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert redis_client.zcard(KEY) == 0  # woken for the removal, on time
    time.sleep(0.2)
    assert limiter.flushes == 1  # and asleep again


def test_a_slot_taken_by_a_hit_is_not_removed_again(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "RELEASE_DELAY_SECONDS", 0.05)
    limiter = _Counting(2, redis_client, lease_seconds=60)
    first = limiter.acquire(KEY)
    second = limiter.acquire(KEY)
    assert first is not None
    assert second is not None
    limiter.release_later(first)
    assert limiter.take_released(KEY) == [first.holder]  # a rate hit removes it
    time.sleep(0.1)  # past the removal's deadline
    assert limiter.flushes == 0  # nothing was left to remove
    limiter.release(second)


def test_steady_traffic_does_not_wake_the_keeper(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = ConcurrencyLimiter(4, redis_client, lease_seconds=60)
    wake_ups: list[int] = []
    notify = limiter._duty.notify

    def counted(n: int = 1) -> None:
        wake_ups.append(n)
        notify(n)

    monkeypatch.setattr(limiter._duty, "notify", counted)
    for request in range(100):  # a request every 3 ms; between two, no slot is held
        if request == 5:
            wake_ups.clear()  # the keeper has found the pace
        limiter.release_later(_taken(limiter))
        time.sleep(0.003)
    # A stall of the machine (a sleep 10 ms late) may cost one; leaving the
    # grid whenever no slot was held woke it 95 times.
    assert len(wake_ups) <= 20


def test_leases_are_renewed_while_held(redis_client: redis.Redis) -> None:
    limiter = _Counting(1, redis_client, lease_seconds=0.3)  # renewals every 0.1 s
    slot = limiter.acquire(KEY)
    assert slot is not None
    other = ConcurrencyLimiter(1, redis_client, lease_seconds=0.3)  # another pod
    end = time.monotonic() + 0.9  # three leases long
    while time.monotonic() < end:
        assert other.acquire(KEY) is None  # never given back early
        time.sleep(0.02)
    assert limiter.renewals >= 6
    limiter.release(slot)
    assert other.acquire(KEY) is not None


def test_the_keeper_ends_with_nothing_held_and_starts_again(redis_client: redis.Redis) -> None:
    limiter = ConcurrencyLimiter(1, redis_client, lease_seconds=0.15)  # renewals every 0.05 s
    others = _keepers()
    limiter.release_later(_taken(limiter))
    (keeper,) = _keepers() - others
    keeper.join(timeout=1)
    assert not keeper.is_alive()
    assert redis_client.zcard(KEY) == 0

    limiter.release_later(_taken(limiter))
    (again,) = _keepers() - others
    deadline = time.monotonic() + RELEASED_WITHIN
    while redis_client.zcard(KEY) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert redis_client.zcard(KEY) == 0
    again.join(timeout=1)
    assert not again.is_alive()


def _taken(limiter: ConcurrencyLimiter) -> leases.Slot:
    slot = limiter.acquire(KEY)
    assert slot is not None
    return slot


def _keepers() -> set[threading.Thread]:
    """The live lease keepers (this process's limiters each run one while they hold slots)."""
    return {thread for thread in threading.enumerate() if thread.name == "lease-keeper"}
