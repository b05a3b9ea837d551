"""Redis helpers that fail open: a Redis error is logged, counted and bypassed.

:func:`redis_guard` is the one place that does so; every other helper here is
built on it. Values are JSON. Every function here returns "nothing cached"
instead of raising when Redis misbehaves, so callers fall back to the source
of truth.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from flask import has_request_context, request
from redis.exceptions import RedisError
from redis.lock import Lock

from service.extensions import redis_store
from service.metrics import REDIS_ERRORS

log = logging.getLogger(__name__)

# How long a job records its runs in Redis (the sweep's and the tokens refresh's
# last run, last success, counts): longer than any alert window that reads them.
JOB_RECORD_SECONDS = 30 * 86_400
# In the request's WSGI environ (strictly one request's, unlike ``g``, which
# a request shares with an application context already pushed, as in tests):
# key -> raw value, read ahead by this request.
_READ_AHEAD = "trading.redis_read_ahead"


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
    """The decoded values of those ``keys`` that exist (``{}`` when Redis
    fails); taken from :func:`read_ahead` when this request read them all ahead."""
    keys = list(keys)
    raws: list[Any] | None = take_read_ahead(keys)
    if raws is None:
        raws = []
        if keys:
            with redis_guard(component):
                raws = redis_store.threads.execute("MGET", *keys)
    return {key: json.loads(raw) for key, raw in zip(keys, raws, strict=False) if raw is not None}


def read_ahead(keys: Sequence[str], component: str = "cache") -> None:
    """Read ``keys`` now, in one round trip with each other, for reads later
    in the same request that would each cost one: a read that finds all its
    keys read ahead (:func:`take_read_ahead`) takes their values instead,
    once; values nobody took go with the request. Outside a request, and
    when Redis fails, nothing is read ahead."""
    if not has_request_context():
        return
    values = None
    with redis_guard(component):
        values = redis_store.threads.execute("MGET", *keys)
    if values is not None:
        request.environ.setdefault(_READ_AHEAD, {}).update(zip(keys, values, strict=True))


def take_read_ahead(keys: Sequence[str]) -> list[Any] | None:
    """The raw values (``None`` for a missing key) of ``keys`` when this
    request read every one of them ahead and none was taken yet (they are
    taken now: a second read goes to Redis); else ``None``."""
    ahead: dict[str, Any] | None = (
        request.environ.get(_READ_AHEAD) if has_request_context() else None
    )
    if not ahead or not all(key in ahead for key in keys):
        return None
    return [ahead.pop(key) for key in keys]


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
