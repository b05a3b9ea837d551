"""Redis helpers that fail open: a Redis error is logged, counted and bypassed.

:func:`redis_guard` is the one place that does so; every other helper here is
built on it. Values are JSON. Every function here returns "nothing cached"
instead of raising when Redis misbehaves, so callers fall back to the source
of truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from redis.exceptions import RedisError
from redis.lock import Lock

from service.extensions import redis_store
from service.metrics import REDIS_ERRORS

log = logging.getLogger(__name__)

# How long a job records its runs in Redis (the sweep's and the tokens refresh's
# last run, last success, counts): longer than any alert window that reads them.
JOB_RECORD_SECONDS = 30 * 86_400


def record_failure(component: str, exc: RedisError) -> None:
    """Count and log a bypassed Redis failure."""
    REDIS_ERRORS.labels(component).inc()
    log.warning("redis unavailable, bypassed", extra={"component": component, "error": repr(exc)})


class redis_guard:  # lower case: used as a function, ``with redis_guard(...)``
    """Fail open: a ``RedisError`` raised in the block is counted, logged and
    swallowed, and the block ends there; ``guard.failed`` tells the caller.

    ::

        value = None
        with redis_guard("cache"):
            value = client.get(key)

    A class rather than a ``@contextmanager`` generator: hot paths enter
    several a request, and a generator's set-up costs several times more.
    """

    __slots__ = ("component", "error")

    def __init__(self, component: str = "cache") -> None:
        self.component = component
        self.error: RedisError | None = None  # what the block raised, if anything

    @property
    def failed(self) -> bool:
        return self.error is not None

    def __enter__(self) -> redis_guard:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if isinstance(error, RedisError):
            self.error = error
            record_failure(self.component, error)
            return True
        return False


def dumps(value: Any) -> str:
    """Compact JSON, the encoding of every cached value."""
    return json.dumps(value, separators=(",", ":"))


def get_json(key: str, component: str = "cache") -> Any | None:
    """The decoded value at ``key``, or ``None`` when absent or Redis fails."""
    raw = None
    with redis_guard(component):
        raw = redis_store.client.get(key)
    return None if raw is None else json.loads(raw)


def get_many_json(keys: Iterable[str], component: str = "cache") -> dict[str, Any]:
    """The decoded values of those ``keys`` that exist (``{}`` when Redis fails)."""
    keys = list(keys)
    raws: list[Any] = []
    if keys:
        with redis_guard(component):
            raws = redis_store.threads.execute("MGET", *keys)
    return {key: json.loads(raw) for key, raw in zip(keys, raws, strict=False) if raw is not None}


def set_many_json(values: Mapping[str, Any], ttl_seconds: int, component: str = "cache") -> bool:
    """Store ``values`` with one expiry, in one round trip; ``False`` if Redis failed."""
    if not values:
        return True
    with redis_guard(component) as guard:
        pipe = redis_store.client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(key, dumps(value), ex=ttl_seconds)
        pipe.execute()
    return not guard.failed


def delete(*keys: str, component: str = "cache") -> bool:
    """Delete ``keys``; ``False`` if Redis failed."""
    with redis_guard(component) as guard:
        redis_store.client.delete(*keys)
    return not guard.failed


def release(lock: Lock, component: str = "cache") -> None:
    """Release a lock this caller acquired. A lock that expired meanwhile, or a
    Redis failure, is counted and logged: the lock expires on its own."""
    with redis_guard(component):
        lock.release()
