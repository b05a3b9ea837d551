"""Health, readiness, request ids and the error envelope."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from tests.bench.harness import RedisServer

# A port nothing listens on: connections are refused at once.
DEAD_REDIS = "redis://127.0.0.1:1/0"
DEAD_POSTGRES = "postgresql://postgres@127.0.0.1:1/test"


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_readyz_names_each_dependency(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["status"] == "ready"
    assert response.json["checks"]["database"]["status"] == "up"
    assert response.json["checks"]["redis"]["status"] == "up"


def test_readyz_is_degraded_but_200_without_redis(make_app: Callable[..., Flask]) -> None:
    response = make_app(redis_url=DEAD_REDIS).test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["status"] == "degraded"
    assert response.json["checks"]["redis"]["status"] == "down"
    assert response.json["checks"]["database"]["status"] == "up"


def test_readyz_is_503_without_postgres(make_settings: Callable[..., Settings]) -> None:
    dead = create_app(make_settings(database_url=DEAD_POSTGRES))
    response = dead.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"]["status"] == "down"
    assert response.json["checks"]["redis"]["status"] == "up"


def test_request_id_is_echoed_or_made(client: FlaskClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(made.headers["X-Request-ID"]) == 32


def test_unknown_route_is_a_json_404(client: FlaskClient) -> None:
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.json is not None
    assert response.json["error"]["code"] == "not_found"
    assert set(response.json["error"]) == {"code", "message", "details"}


def test_wrong_method_is_a_json_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.json is not None
    assert response.json["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_a_500_without_internals(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    app.config["TESTING"] = False  # let the error handler answer, as in production
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json == {
        "error": {"code": "internal_error", "message": "Internal server error.", "details": {}}
    }
    assert "secret internal detail" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert logged
    assert logged[0].__dict__["request_id"] == "req-42"


def test_readyz_is_degraded_when_redis_refuses_writes(
    make_app: Callable[..., Flask], private_redis: RedisServer
) -> None:
    """A Redis at its memory limit still answers PING, but the limits fail open."""
    client = make_app(redis_url=private_redis.url).test_client()
    assert client.get("/readyz").json["checks"]["redis"]["status"] == "up"  # type: ignore[index]
    full = redis.Redis.from_url(private_redis.url)
    full.config_set("maxmemory-policy", "noeviction")
    full.config_set("maxmemory", 1)  # below what is already used: every write is refused

    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json is not None
    assert response.json["status"] == "degraded"
    assert response.json["checks"]["redis"] == {
        "status": "refusing_writes",
        "error": "OutOfMemoryError",
    }
