"""What the limits cost a request in Redis round trips (issue 17): the rate hit
takes the concurrency slot in the same script, so an admitted request makes
two round trips (hit and slot; slot back), and a refused one makes the hit
alone or gives nothing back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.connection
from flask import Flask
from flask.testing import FlaskClient

from service.ratelimit import CONCURRENCY_KEY_PREFIX
from service.ratelimit.leases import ConcurrencyLimiter

KEY = f"{CONCURRENCY_KEY_PREFIX}:global"


@pytest.fixture
def probe(make_app: Callable[..., Flask]) -> Callable[..., FlaskClient]:
    def build(**overrides: object) -> FlaskClient:
        app = make_app(rate_limit_enabled=True, **overrides)
        app.add_url_rule("/probe", view_func=lambda: {"ok": True})
        client = app.test_client()
        client.get("/probe")  # loads the scripts
        return client

    return build


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every command this process sends to Redis from now on (counted
    client-side: the server's stats count other tests' commands too)."""
    commands: list[Any] = []
    original = redis.connection.Connection.send_packed_command

    def counted(self: redis.connection.Connection, command: Any, check_health: bool = True) -> None:
        commands.append(command)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    return commands


def test_an_admitted_request_makes_two_round_trips(
    probe: Callable[..., FlaskClient], sent: list[Any], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="1000/second", max_concurrent_requests=5)
    for _ in range(10):
        sent.clear()
        response = client.get("/probe")
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "1000"
        assert len(sent) == 2  # rate hit + slot, slot back
    assert redis_client.zcard(KEY) == 0  # every slot was given back


def test_a_request_refused_for_concurrency_makes_one_round_trip(
    probe: Callable[..., FlaskClient], sent: list[Any], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="1000/second", max_concurrent_requests=1)
    other = ConcurrencyLimiter(1, redis_client, lease_seconds=60)
    held = other.acquire(KEY)  # another pod holds the only slot
    assert held is not None
    sent.clear()
    response = client.get("/probe")
    assert response.status_code == 429
    assert response.json["error"]["code"] == "too_many_concurrent_requests"  # type: ignore[index]
    assert len(sent) == 1  # the hit found the slots taken: nothing to give back
    other.release(held)
    assert client.get("/probe").status_code == 200
