"""Unbound extension singletons, bound to the app in :func:`service.app.create_app`.

Nothing here talks to the network at import time: clients connect lazily.
"""

from __future__ import annotations

import time
from typing import Any, cast

import fakeredis
import redis
from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DisconnectionError

# The models map onto their own declarative base (service.models.base.Base);
# Flask-SQLAlchemy provides the engine and the request-scoped session.
db = SQLAlchemy()
migrate = Migrate()

# A pooled connection idle for at least this long is pinged (``SELECT 1``)
# before use; one returned to the pool more recently is used as it is.
PING_IDLE_AFTER_SECONDS = 1.0
_CHECKED_IN = "checked_in"


def ping_idle_connections(engine: Engine) -> None:
    """Pessimistic disconnect handling for connections that sat idle:
    ``pool_pre_ping`` would cost a ``SELECT 1`` round trip at every checkout,
    three per buy (one per short transaction). A connection back in the pool
    for under :data:`PING_IDLE_AFTER_SECONDS` was just working; if the server
    went away since, its first statement fails, SQLAlchemy invalidates the
    whole pool (the connection and every older one are replaced), and the
    request answers as for an unreachable database (503)."""

    @event.listens_for(engine, "checkin")
    def checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        # A new connection (no check-in yet) was just opened: nothing to check.
        idle_since = record.info.get(_CHECKED_IN)
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_AFTER_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
        except Exception as exc:  # the driver's own error: the connection is dead
            # The pool discards the connection and checks out another.
            raise DisconnectionError() from exc


# The bind (``SQLALCHEMY_BINDS``) of the engine whose connections are always
# in autocommit, on PostgreSQL: switching a pooled connection in and out of
# autocommit costs psycopg2 a round trip each way, at every checkout.
AUTOCOMMIT_BIND = "autocommit"
_AUTOCOMMIT = "autocommit_engine"


def register_autocommit(app: Flask) -> None:
    """(App context.) Give ``app`` :func:`autocommit` connections: from the
    :data:`AUTOCOMMIT_BIND` engine when there is one, else (SQLite) from the
    app's own engine, switched to autocommit at each checkout."""
    engine = db.engines.get(AUTOCOMMIT_BIND)
    if engine is None:
        engine = db.engine.execution_options(isolation_level="AUTOCOMMIT")
    app.extensions[_AUTOCOMMIT] = engine


def autocommit() -> Connection:
    """A connection (use it in ``with``) on which each statement commits by
    itself: one round trip, no ``BEGIN`` and ``COMMIT`` and no session. For
    the writes of a buy, which are one statement each."""
    engine: Engine = current_app.extensions[_AUTOCOMMIT]
    return engine.connect()


# Short socket timeouts: Redis is an optimisation, so a sick Redis must cost a
# request milliseconds, not seconds (callers fail open on RedisError).
REDIS_SOCKET_TIMEOUT_SECONDS = 0.25


class RedisClient:
    """Holds the app's Redis client: the real server at ``REDIS_URL``, or an
    in-process stand-in (fakeredis, with Lua) when it is unset."""

    def init_app(self, app: Flask, url: str | None) -> None:
        client: redis.Redis
        if url:
            client = redis.Redis.from_url(
                url,
                socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
                health_check_interval=30,
            )
        else:
            client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        app.extensions["redis"] = client

    @property
    def client(self) -> redis.Redis:
        return cast(redis.Redis, current_app.extensions["redis"])


redis_store = RedisClient()
