"""Unbound extension singletons, bound to the app in :func:`service.app.create_app`.

Nothing here talks to the network at import time: clients connect lazily.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import fakeredis
import redis
from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis.connection import Connection as RedisConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DisconnectionError

# The models map onto their own declarative base (service.models.base.Base);
# Flask-SQLAlchemy provides the engine and the request-scoped session.
_T = TypeVar("_T")

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
_REDIS_THREADS = "redis_threads"


class RedisClient:
    """Holds the app's Redis client: the real server at ``REDIS_URL``, or an
    in-process stand-in (fakeredis, with Lua) when it is unset; and, for hot
    paths, each thread's own connection of it (:class:`service.cache.ThreadConnections`)."""

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
        app.extensions[_REDIS_THREADS] = thread_connections(client)

    @property
    def client(self) -> redis.Redis:
        return cast(redis.Redis, current_app.extensions["redis"])

    @property
    def threads(self) -> ThreadConnections:
        return cast(ThreadConnections, current_app.extensions[_REDIS_THREADS])


class ThreadConnections:
    """Each thread's own connection from ``client``'s pool, kept for the
    thread's life by a single-connection client (which gives it back when the
    thread ends), for the commands of hot paths: sent straight on the
    connection, they skip redis-py's pool checkout and return, retry wrapper
    and reply callbacks, about 80 µs of CPU a command. Replies are as Redis
    sends them (bytes, integers, lists; ``b"OK"`` for ``SET``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._local = threading.local()

    def run(self, send: Callable[[RedisConnection, bool], _T]) -> _T:
        """``send(connection, resent)`` on this thread's connection. If the
        connection, kept from an earlier call, turns out dropped (a restarted
        Redis, a server-side timeout), once more on a new one with ``resent``
        true: ``send`` must be safe to run twice, as the lost run may have
        reached Redis. A failure leaves the connection closed, never out of
        step with its replies.

        :raises RedisError: Redis failed (callers guard with :func:`redis_guard`).
        """
        connection = self._connection()
        reused = connection.is_connected
        try:
            return _closing_on_error(connection, send, False)
        except RedisConnectionError:
            if not reused:  # a new connection failed: Redis is away
                raise
            return _closing_on_error(connection, send, True)

    def execute(self, *command: Any) -> Any:
        """The reply to one ``command`` (one that may run twice, see :meth:`run`)."""

        def send(connection: RedisConnection, _resent: bool) -> Any:
            connection.send_command(*command)
            return connection.read_response()

        return self.run(send)

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies to ``commands``, sent in one round trip (each may run twice)."""

        def send(connection: RedisConnection, _resent: bool) -> list[Any]:
            connection.send_packed_command(connection.pack_commands(commands))
            return [connection.read_response() for _ in commands]

        return self.run(send)

    def _connection(self) -> RedisConnection:
        # Per process too: a forked child must not share its parent's socket.
        held: tuple[int, redis.Redis] | None = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid():
            held = self._local.held = (
                os.getpid(),
                redis.Redis(connection_pool=self._pool, single_connection_client=True),
            )
        connection = held[1].connection
        assert connection is not None  # a single-connection client holds one from the start
        return connection


# Keyed by the client, which the value does not hold (only its pool): an
# entry goes with its client.
_OF_CLIENT: weakref.WeakKeyDictionary[redis.Redis, ThreadConnections] = weakref.WeakKeyDictionary()
_OF_CLIENT_LOCK = threading.Lock()


def thread_connections(client: redis.Redis) -> ThreadConnections:
    """The :class:`ThreadConnections` of ``client``: one per client, so that
    a thread holds one connection of it, whichever part of the app sends."""
    with _OF_CLIENT_LOCK:
        threads = _OF_CLIENT.get(client)
        if threads is None:
            threads = _OF_CLIENT[client] = ThreadConnections(client)
        return threads


def _closing_on_error(
    connection: RedisConnection, send: Callable[[RedisConnection, bool], _T], resent: bool
) -> _T:
    try:
        return send(connection, resent)
    except BaseException:
        # Replies may be left unread (an error reply in a pipeline, a timeout):
        # a new connection, rather than answers out of step.
        connection.disconnect()
        raise


redis_store = RedisClient()
