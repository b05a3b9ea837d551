"""The vendor's circuit breaker: pybreaker, its state shared in Redis by every
thread, worker and pod.

pybreaker holds its lock for the whole guarded call, which would serialise a
worker's threads, so each thread gets its own breaker object over the same
shared state. While Redis is down the circuit is closed (fail open), counted
in ``trading_redis_errors_total{component="breaker"}``.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pybreaker
from redis import Redis

from service.cache import redis_guard, take_read_ahead
from service.extensions import thread_connections
from service.metrics import REDIS_ERRORS

log = logging.getLogger(__name__)


class _BreakerRedisLog:
    """Stands in for pybreaker's storage logger, through which it reports each
    Redis error it swallows (falling back to a closed circuit): count it and
    log one line, not a traceback per vendor call."""

    def exception(self, message: str, *args: object) -> None:
        REDIS_ERRORS.labels("breaker").inc()
        log.warning("circuit breaker state unavailable in Redis: " + message, *args)


def state_keys(namespace: str) -> list[str]:
    """The keys of the circuit's state and failure count, in pybreaker's
    layout ("<namespace>:pybreaker:<name>")."""
    base = pybreaker.CircuitRedisStorage.BASE_NAMESPACE
    return [f"{namespace}:{base}:{name}" for name in ("state", "fail_counter")]


class _SharedRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage (its keys, its behaviour), with its swallowed
    Redis errors counted (through its documented ``logger`` attribute) and
    one round trip less per successful call.

    pybreaker reads the state before each call (``GET``) and sets the failure
    count to zero after each success (``SET``). This storage reads the count
    with the state (one ``MGET``) and writes it after a success only when
    that read saw failures. A success that overlaps another caller's failure
    may then leave that failure counted, where pybreaker's reset might land
    before or after it: with concurrent callers the count was never exact.
    """

    logger = _BreakerRedisLog()  # type: ignore[assignment]

    def __init__(self, state: str, redis: Redis, namespace: str) -> None:
        super().__init__(state, redis, namespace=namespace)
        self._threads = thread_connections(redis)
        self._state_keys = state_keys(namespace)
        self._failures_read: int | None = None  # by the last state read, until used

    @property
    def state(self) -> str:
        self._failures_read = None
        # Read ahead with the buy's cached quote (service.services.buys), or now.
        values = take_read_ahead(self._state_keys)
        if values is None:
            with redis_guard("breaker"):
                values = self._threads.execute("MGET", *self._state_keys)
        if values is None:
            return pybreaker.STATE_CLOSED  # Redis failed: as pybreaker's own storage does
        state, failures = values
        if state is None:
            return super().state  # pybreaker re-creates the missing keys
        self._failures_read = int(failures or 0)
        return state.decode() if isinstance(state, bytes) else str(state)

    @state.setter
    def state(self, state: str) -> None:
        pybreaker.CircuitRedisStorage.state.fset(self, state)  # type: ignore[attr-defined]

    def reset_counter(self) -> None:
        failures, self._failures_read = self._failures_read, None
        if failures != 0:
            super().reset_counter()


class _TransitionLog(pybreaker.CircuitBreakerListener):
    """Logs a WARNING when the vendor circuit changes state, once per transition.

    pybreaker tells the listeners of the breaker that makes a transition, and
    again those of every breaker that later notices the new state in the shared
    storage (each thread, worker and pod has its own). The breaker that makes
    it calls its listeners before it writes the storage, so a transition whose
    new state is already stored was made elsewhere (and logged there)."""

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        if cb.current_state == new_state.name:
            return
        log.warning(
            "vendor circuit %s → %s",
            old_state.name if old_state else None,
            new_state.name,
            extra={
                "circuit": cb.name,
                "from_state": old_state.name if old_state else None,
                "to_state": new_state.name,
                "failures": cb.fail_counter,
            },
        )


_TRANSITION_LOG = _TransitionLog()


_NAMESPACE = "vendor"


class SharedCircuit:
    """One circuit, seen by each thread through breaker objects of its own."""

    def __init__(
        self,
        redis: Redis,
        fail_max: int,
        reset_timeout: int,
        *,
        exclude: tuple[type[Exception], ...] = (),
    ) -> None:
        self._redis = redis
        self._fail_max = fail_max
        self._reset_timeout = reset_timeout
        self._exclude = exclude
        self._local = threading.local()

    @property
    def state_keys(self) -> list[str]:
        """The Redis keys a call reads first (see :func:`service.cache.read_ahead`)."""
        return state_keys(_NAMESPACE)

    def is_open(self) -> bool:
        return self.breaker().current_state == pybreaker.STATE_OPEN

    def retry_after(self) -> int:
        """Seconds until the open circuit lets a trial call through (at least 1)."""
        opened_at = self._storage().opened_at
        if opened_at is None:
            return 1
        remaining = opened_at + timedelta(seconds=self._reset_timeout) - datetime.now(UTC)
        return max(1, int(remaining.total_seconds() + 0.999))

    def breaker(self) -> pybreaker.CircuitBreaker:
        """This thread's breaker over the shared state."""
        breaker: pybreaker.CircuitBreaker | None = getattr(self._local, "breaker", None)
        if breaker is not None:
            return breaker
        storage = self._storage()
        breaker = pybreaker.CircuitBreaker(
            fail_max=self._fail_max,
            reset_timeout=self._reset_timeout,
            exclude=list(self._exclude),
            state_storage=storage,
            name="vendor",
            throw_new_error_on_trip=False,
            listeners=[_TRANSITION_LOG],
        )
        if isinstance(storage, pybreaker.CircuitRedisStorage):
            self._local.breaker = breaker
        return breaker

    def _storage(self) -> pybreaker.CircuitBreakerStorage:
        """This thread's view of the shared circuit state. Creating it writes to
        Redis; while Redis is down the circuit is closed and per call (nothing
        is kept, so the shared state is picked up again once Redis answers)."""
        storage: pybreaker.CircuitBreakerStorage | None = getattr(self._local, "storage", None)
        if storage is None:
            with redis_guard("breaker"):
                storage = _SharedRedisStorage(pybreaker.STATE_CLOSED, self._redis, _NAMESPACE)
                self._local.storage = storage
        return storage or pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
