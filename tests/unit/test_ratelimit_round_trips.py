"""What the limits cost a request in Redis round trips (issue 17): the rate hit
takes the concurrency slot in the same script and removes the slots the
process's finished requests gave back, so an admitted request makes one round
trip; a slot no later hit removes is given back by the lease keeper within
``RELEASE_DELAY_SECONDS`` (one pipelined round trip for all waiting). Counted
client-side."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.connection
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from service.ratelimit import RATE_STORAGE_PREFIX, leases, window
from service.ratelimit.leases import LIMITER_KEY_SECONDS, ConcurrencyLimiter
from tests.unit.test_ratelimit import KEY, RELEASED_WITHIN, settled_slots

# Their slots must come back within milliseconds (RELEASED_WITHIN).
pytestmark = pytest.mark.usefixtures("no_pending_collection")


@pytest.fixture
def probe(make_app: Callable[..., Flask], redis_client: redis.Redis) -> Callable[..., FlaskClient]:
    def build(**overrides: object) -> FlaskClient:
        app = make_app(rate_limit_enabled=True, **overrides)
        app.add_url_rule("/probe", view_func=lambda: {"ok": True})
        client = app.test_client()
        client.get("/probe")  # loads the scripts
        assert settled_slots(redis_client, 0) == 0
        return client

    return build


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every command this test's thread (the requests' path, not the lease
    keeper's) sends to Redis from now on (counted client-side: the server's
    stats count other tests' commands too), except a new connection's
    handshake (``HELLO``, ``CLIENT SETINFO``), which a connection pays once."""
    commands: list[Any] = []
    original = redis.connection.Connection.send_packed_command
    original_handshake = redis.connection.Connection.on_connect_check_health
    requests_thread = threading.current_thread()
    connecting = threading.local()

    def counted(self: redis.connection.Connection, command: Any, check_health: bool = True) -> None:
        if threading.current_thread() is requests_thread and not getattr(connecting, "now", False):
            commands.append(command)
        original(self, command, check_health)

    def handshake(self: redis.connection.Connection, check_health: bool = True) -> None:
        connecting.now = True
        try:
            original_handshake(self, check_health)
        finally:
            connecting.now = False

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    monkeypatch.setattr(redis.connection.Connection, "on_connect_check_health", handshake)
    return commands


def test_an_admitted_request_makes_one_round_trip(
    probe: Callable[..., FlaskClient],
    sent: list[Any],
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = probe(rate_limit="1000/second", max_concurrent_requests=1)
    # A slow keeper: each slot here can only be given back by the next hit.
    monkeypatch.setattr(leases, "RELEASE_DELAY_SECONDS", 1.0)
    time.sleep(0.01)  # the keeper's tick under way ends; its next one is long
    for _ in range(10):
        sent.clear()
        response = client.get("/probe")  # one slot: each found the last one's given back
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "1000"
        assert len(sent) == 1  # rate hit, slot, and the previous request's slot back
    assert redis_client.zcard(KEY) == 1  # the last request's slot waits for a ride
    deadline = time.monotonic() + 1.0 + RELEASED_WITHIN
    while redis_client.zcard(KEY) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_client.zcard(KEY) == 0  # the keeper gave it back


def test_a_finished_request_s_slot_is_given_back_within_milliseconds(
    probe: Callable[..., FlaskClient], sent: list[Any], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="1000/second", max_concurrent_requests=1)
    other = ConcurrencyLimiter(1, redis_client, lease_seconds=60)  # another pod
    for _ in range(5):
        assert client.get("/probe").status_code == 200
        answered = time.monotonic()
        while (slot := other.acquire(KEY)) is None:
            assert time.monotonic() - answered < RELEASED_WITHIN
        other.release(slot)


def test_a_request_refused_for_concurrency_looks_twice(
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
    # The hit found the slots taken, and a second look after the release delay too.
    assert len(sent) == 2
    other.release(held)
    assert client.get("/probe").status_code == 200


def test_the_rate_hit_survives_a_redis_that_forgot_its_scripts(
    probe: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="3/minute", max_concurrent_requests=1)  # one request spent
    redis_client.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
    statuses = [client.get("/probe").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # the script loaded again, the window kept


def test_the_rate_hit_survives_a_connection_redis_dropped(
    probe: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="3/minute", max_concurrent_requests=1)  # one request spent
    failures = _limiter_errors()
    redis_client.client_kill_filter(_type="normal", skip_me=True)  # the requests' connection too
    statuses = [client.get("/probe").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]  # sent again on a new connection: counted, not let through
    assert _limiter_errors() == failures


def test_a_hit_whose_reply_was_lost_is_answered_as_it_ran(
    probe: Callable[..., FlaskClient], redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = probe(rate_limit="2/minute", max_concurrent_requests=1)  # one request spent
    send_and_read = window._send_and_read
    lost: list[Any] = []

    def reply_lost(connection: redis.connection.Connection, *args: Any) -> Any:
        if not lost:  # the script runs; its reply is lost with the connection
            lost.append(send_and_read(connection, *args))
            connection.disconnect()
            raise redis.ConnectionError("Connection closed by server.")
        return send_and_read(connection, *args)

    monkeypatch.setattr(window, "_send_and_read", reply_lost)
    assert client.get("/probe").status_code == 200  # admitted by the run whose reply was lost
    assert settled_slots(redis_client, 0) == 0  # its slot given back: none left behind
    refused = client.get("/probe")
    assert refused.status_code == 429  # the resend counted nothing: two of two
    assert refused.json["error"]["code"] == "rate_limited"  # type: ignore[index]


def test_a_request_thread_that_ends_gives_its_connection_back(
    probe: Callable[..., FlaskClient], redis_client: redis.Redis, redis_url: str
) -> None:
    # Its connections carry a name, so that other tests' reconnecting clients
    # are not counted.
    client = probe(redis_url=f"{redis_url}?client_name=thread-per-request")

    def connections() -> int:
        return sum(c["name"] == "thread-per-request" for c in redis_client.client_list())

    before = connections()
    for _ in range(20):  # one request per thread, as a thread-per-request server serves them
        thread = threading.Thread(target=client.get, args=("/probe",))
        thread.start()
        thread.join()
    assert connections() - before < 5  # not one per thread


def _limiter_errors() -> float:
    return REGISTRY.get_sample_value("trading_redis_errors_total", {"component": "limiter"}) or 0.0


def test_the_window_keeps_only_the_admissions_inside_it(
    probe: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="3/second", max_concurrent_requests=5)  # one request spent
    assert [client.get("/probe").status_code for _ in range(3)] == [200, 200, 429]
    (window,) = redis_client.keys(f"{RATE_STORAGE_PREFIX}:*")
    assert redis_client.llen(window) == 3  # the refused hit left nothing behind
    assert redis_client.ttl(window) >= LIMITER_KEY_SECONDS  # it expires, days after its last write
    time.sleep(1.05)  # all three have left the window
    response = client.get("/probe")
    assert response.status_code == 200
    assert response.headers["RateLimit-Remaining"] == "2"
    assert redis_client.llen(window) == 1  # the old admissions are gone, not kept
    assert [client.get("/probe").status_code for _ in range(3)] == [200, 200, 429]


def test_a_slot_given_back_by_another_worker_a_moment_ago_is_not_a_429(
    probe: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = probe(rate_limit="1000/second", max_concurrent_requests=1)
    other = ConcurrencyLimiter(1, redis_client)  # another worker, whose request just ended
    held = other.acquire(KEY)
    assert held is not None
    other.release_later(held)  # queued there: removed by its keeper within the delay
    assert client.get("/probe").status_code == 200
