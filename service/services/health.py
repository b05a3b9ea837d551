"""Readiness: what each dependency answers right now."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.cache import redis_guard
from service.config import current_settings
from service.extensions import db, redis_store
from service.vendorapi.client import vendor_client

log = logging.getLogger(__name__)

# The key each readiness check writes (a few bytes, gone a minute later).
WRITE_PROBE_KEY = "health:write-probe"
WRITE_PROBE_SECONDS = 60


def readiness() -> dict[str, Any]:
    """Check PostgreSQL and Redis and read the vendor circuit.

    ``status`` is ``unavailable`` when the database is down (the service can
    record nothing), ``degraded`` when only Redis is down or refuses writes
    (full: it still serves, slower and without shared limits), else ``ready``.
    """
    checks: dict[str, dict[str, Any]] = {
        "database": _check_database(),
        "redis": _check_redis(),
        "vendor": {"status": "circuit_open" if vendor_client().circuit_is_open() else "ok"},
    }
    if checks["database"]["status"] != "up":
        status = "unavailable"
    elif checks["redis"]["status"] in ("down", "refusing_writes"):
        status = "degraded"
    else:
        status = "ready"
    return {"status": status, "checks": checks}


def _check_database() -> dict[str, Any]:
    try:
        db.session.execute(text("SELECT 1"))
        return {"status": "up"}
    except SQLAlchemyError as exc:
        log.warning("readiness: database down", extra={"error": type(exc).__name__})
        return {"status": "down", "error": type(exc).__name__}
    finally:
        db.session.remove()


def _check_redis() -> dict[str, Any]:
    """Redis answers, and takes a write: a Redis at its memory limit answers
    PING but refuses writes, and then the limits fail open."""
    with redis_guard("health") as guard:
        redis_store.client.ping()
    if guard.error is not None:
        return {"status": "down", "error": type(guard.error).__name__}
    with redis_guard("health") as guard:
        redis_store.client.set(WRITE_PROBE_KEY, "1", ex=WRITE_PROBE_SECONDS)
    if guard.error is not None:
        return {"status": "refusing_writes", "error": type(guard.error).__name__}
    return {"status": "up" if current_settings().redis_url else "embedded"}
