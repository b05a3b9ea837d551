"""Keys read ahead in one round trip serve the request's later reads, once."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.connection
from flask import Flask

from service.cache import get_many_json, read_ahead, take_read_ahead


@pytest.fixture
def sent(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The commands sent from now on, once the app's connection of this
    thread is open (a new connection's handshake is not counted)."""
    with app.test_request_context():
        get_many_json(["warm"])
    commands: list[str] = []
    send_command = redis.connection.Connection.send_command

    def recording(connection: redis.connection.Connection, *args: Any, **options: Any) -> None:
        commands.append(str(args[0]).upper())
        send_command(connection, *args, **options)

    monkeypatch.setattr(redis.connection.Connection, "send_command", recording)
    return commands


def test_reads_of_keys_read_ahead_cost_no_round_trip_and_serve_once(
    app: Flask, redis_client: redis.Redis, sent: list[str]
) -> None:
    redis_client.set("a", '{"n": 1}')
    sent.clear()
    with app.test_request_context():
        read_ahead(["a", "b", "c"])
        redis_client.set("a", '{"n": 2}')  # written after the read ahead
        assert get_many_json(["a", "b"]) == {"a": {"n": 1}}  # as read ahead
        assert sent == ["MGET", "SET"]  # the read ahead, and the test's own write
        assert get_many_json(["a"]) == {"a": {"n": 2}}  # taken once: now from Redis
        assert take_read_ahead(["c"]) == [None]  # a missing key, read ahead as missing
        assert take_read_ahead(["c"]) is None
    assert sent == ["MGET", "SET", "MGET"]


def test_a_read_of_keys_not_all_read_ahead_goes_to_redis(
    app: Flask, redis_client: redis.Redis, sent: list[str]
) -> None:
    redis_client.set("b", '"fresh"')
    sent.clear()
    with app.test_request_context():
        read_ahead(["a"])
        assert get_many_json(["a", "b"]) == {"b": "fresh"}
        assert sent == ["MGET", "MGET"]
        assert take_read_ahead(["a"]) == [None]  # still there for a read of its own


def test_nothing_is_read_ahead_outside_a_request_or_kept_past_it(
    app: Flask, sent: list[str]
) -> None:
    read_ahead(["a"])  # in the app's context: a job, not a request
    assert take_read_ahead(["a"]) is None
    assert sent == []
    with app.test_request_context():
        read_ahead(["a"])
    # The next request, in the same application context (as the test client's
    # requests are while a test holds one), reads afresh.
    with app.test_request_context():
        assert take_read_ahead(["a"]) is None


def test_a_failed_read_ahead_leaves_the_reads_to_redis(make_app: Any) -> None:
    away = make_app(redis_url="redis://127.0.0.1:1/0")
    with away.test_request_context():
        read_ahead(["a"])  # Redis is away: counted, bypassed
        assert take_read_ahead(["a"]) is None
