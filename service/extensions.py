"""Unbound extension singletons, bound to the app in :func:`service.app.create_app`.

Nothing here talks to the network at import time: clients connect lazily.
"""

from __future__ import annotations

from typing import cast

import fakeredis
import redis
from flask import Flask, current_app
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

# The models map onto their own declarative base (service.models.base.Base);
# Flask-SQLAlchemy provides the engine and the request-scoped session.
db = SQLAlchemy()
migrate = Migrate()

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
