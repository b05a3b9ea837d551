"""Rate and concurrency limits: what a client sees, on real Redis.

Apps here get a ``/probe`` route after they are built, like any feature
blueprint: the limits apply to it without it asking. Another "process" is a
second app or :class:`ConcurrencyLimiter` on the same Redis database.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY

from service.ratelimit import CONCURRENCY_KEY_PREFIX, leases
from service.ratelimit.leases import ConcurrencyLimiter, Slot

# Their slots must come back within milliseconds (RELEASED_WITHIN).
pytestmark = pytest.mark.usefixtures("no_pending_collection")

KEY = f"{CONCURRENCY_KEY_PREFIX}:global"
DEAD_REDIS = "redis://127.0.0.1:1/0"
# A Swagger UI file /docs loads, served by the service itself.
DOCS_ASSET = "/docs/assets/swagger-ui-bundle.js"
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# The renewer thread must not renew behind a test's back: a long lease makes
# its first round come long after the test.
LONG_LEASE = 60.0
# A finished request gives its slot back off its path: the process's next hit
# or its lease keeper removes it within RELEASE_DELAY_SECONDS and a round trip.
# What another process sees after that (with room for a busy machine).
RELEASED_WITHIN = 0.1


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def limited(make_app: Callable[..., Flask]) -> Callable[..., FlaskClient]:
    """A test client of an app with the limits on and a ``/probe`` route."""

    def build(**overrides: object) -> FlaskClient:
        app = make_app(rate_limit_enabled=True, **overrides)

        @app.get("/probe")
        def probe() -> dict[str, bool]:
            return {"ok": True}

        @app.get("/boom")
        def boom() -> dict[str, bool]:
            raise RuntimeError("boom")

        return app.test_client()

    return build


def settled_slots(client: redis.Redis, expected: int) -> int:
    """The slots held in Redis once finished requests' slots are given back:
    waits at most :data:`RELEASED_WITHIN` for ``expected``."""
    deadline = time.monotonic() + RELEASED_WITHIN
    while (held := client.zcard(KEY)) != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    return held


def _expire_lease(client: redis.Redis, holder: str) -> None:
    """Make ``holder``'s lease end now, as if its length had passed unrenewed."""
    seconds, micros = client.time()
    client.zadd(KEY, {holder: seconds * 1000 + micros // 1000 - 1}, xx=True)


# --- rate -------------------------------------------------------------------


def test_requests_over_the_rate_get_429_with_the_envelope_and_headers(
    limited: Callable[..., FlaskClient],
) -> None:
    client = limited(rate_limit="3/minute")
    refused_before = _sample("trading_rate_limited_total", limit="rate")
    counted_before = _sample(
        "trading_http_requests_total", method="GET", endpoint="probe", status="429"
    )

    admitted = [client.get("/probe") for _ in range(3)]
    refused = client.get("/probe", headers={"X-Request-ID": "req-429"})

    assert [r.status_code for r in admitted] == [200, 200, 200]
    assert [r.headers["RateLimit-Remaining"] for r in admitted] == ["2", "1", "0"]
    assert {r.headers["RateLimit-Limit"] for r in admitted} == {"3"}
    assert all(1 <= int(r.headers["RateLimit-Reset"]) <= 60 for r in admitted)
    assert not any("Retry-After" in r.headers for r in admitted)

    assert refused.status_code == 429
    assert refused.json == {
        "error": {
            "code": "rate_limited",
            "message": "Too many requests; retry after the time in Retry-After.",
            "details": {"limit": "3 per 1 minute"},
        }
    }
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["X-Request-ID"] == "req-429"
    assert _sample("trading_rate_limited_total", limit="rate") == refused_before + 1
    assert (
        _sample("trading_http_requests_total", method="GET", endpoint="probe", status="429")
        == counted_before + 1
    )


def test_processes_share_one_rate_budget(limited: Callable[..., FlaskClient]) -> None:
    first, second = limited(rate_limit="3/minute"), limited(rate_limit="3/minute")
    assert [first.get("/probe").status_code for _ in range(2)] == [200, 200]
    assert second.get("/probe").status_code == 200
    assert second.get("/probe").status_code == 429
    assert first.get("/probe").status_code == 429


def test_probes_metrics_and_docs_are_never_limited(
    limited: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = limited(rate_limit="1/minute", max_concurrent_requests=1)
    assert client.get("/probe").status_code == 200
    assert settled_slots(redis_client, 0) == 0
    other = ConcurrencyLimiter(1, redis_client, lease_seconds=LONG_LEASE)
    slot = other.acquire(KEY)  # the API is saturated on both limits
    assert slot is not None
    assert client.get("/probe").status_code == 429

    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", DOCS_ASSET):
        for _ in range(3):
            with client.get(path) as response:  # a file answer holds the file open
                assert response.status_code == 200, path
                assert not any(header in response.headers for header in RATE_HEADERS)
    other.release(slot)


def test_per_client_scope_trusts_forwarded_for_only_from_trusted_proxies(
    limited: Callable[..., FlaskClient],
) -> None:
    behind_proxy = limited(rate_limit="1/minute", rate_limit_scope="client", trusted_proxies=1)
    alice, bob = {"X-Forwarded-For": "203.0.113.1"}, {"X-Forwarded-For": "203.0.113.2"}
    assert behind_proxy.get("/probe", headers=alice).status_code == 200
    assert behind_proxy.get("/probe", headers=alice).status_code == 429
    assert behind_proxy.get("/probe", headers=bob).status_code == 200

    exposed = limited(rate_limit="1/minute", rate_limit_scope="client", trusted_proxies=0)
    mallory = {"X-Forwarded-For": "198.51.100.7"}
    assert exposed.get("/probe", headers=mallory).status_code == 200
    # Without a trusted proxy the header is the client's own claim: ignored.
    assert exposed.get("/probe", headers={"X-Forwarded-For": "198.51.100.8"}).status_code == 429


def test_embedded_default_limits_the_process(limited: Callable[..., FlaskClient]) -> None:
    client = limited(redis_url=None, rate_limit="2/minute")
    answers = [client.get("/probe") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert answers[2].json is not None
    assert answers[2].json["error"]["code"] == "rate_limited"


def test_disabled_limits_leave_requests_alone(
    make_app: Callable[..., Flask], redis_client: redis.Redis
) -> None:
    app = make_app(rate_limit="1/minute", max_concurrent_requests=1)  # RATE_LIMIT_ENABLED=false
    app.add_url_rule("/probe", view_func=lambda: {"ok": True})
    answers = [app.test_client().get("/probe") for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert not any(header in answers[0].headers for header in RATE_HEADERS)
    assert redis_client.keys("*") == []


def test_redis_down_lets_requests_through_and_counts_errors(
    limited: Callable[..., FlaskClient],
) -> None:
    client = limited(redis_url=DEAD_REDIS, rate_limit="1/minute", max_concurrent_requests=1)
    errors_before = _sample("trading_redis_errors_total", component="limiter")
    answers = [client.get("/probe") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert not any(header in answers[0].headers for header in RATE_HEADERS)
    # Each request: the rate hit and the slot both failed over.
    assert _sample("trading_redis_errors_total", component="limiter") == errors_before + 6


# --- concurrency ------------------------------------------------------------


def test_request_beyond_the_concurrency_limit_gets_429(
    limited: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = limited(max_concurrent_requests=2)
    other = ConcurrencyLimiter(2, redis_client, lease_seconds=LONG_LEASE)
    held = [other.acquire(KEY), other.acquire(KEY)]
    refused_before = _sample("trading_rate_limited_total", limit="concurrency")

    refused = client.get("/probe")
    assert refused.status_code == 429
    assert refused.json == {
        "error": {
            "code": "too_many_concurrent_requests",
            "message": "Too many requests in flight; retry after the time in Retry-After.",
            "details": {"limit": 2},
        }
    }
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["RateLimit-Limit"] == "10"
    assert _sample("trading_rate_limited_total", limit="concurrency") == refused_before + 1

    first = held[0]
    assert first is not None
    other.release(first)
    assert client.get("/probe").status_code == 200
    assert settled_slots(redis_client, 1) == 1  # the request gave its slot back


def test_slot_is_given_back_when_the_view_fails(
    limited: Callable[..., FlaskClient], redis_client: redis.Redis
) -> None:
    client = limited(max_concurrent_requests=1)
    assert client.application.config["TESTING"]
    client.application.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)
    assert client.get("/boom").status_code == 500
    assert settled_slots(redis_client, 0) == 0
    assert client.get("/probe").status_code == 200


def test_limit_holds_across_processes(redis_client: redis.Redis) -> None:
    one = ConcurrencyLimiter(2, redis_client, lease_seconds=LONG_LEASE)
    two = ConcurrencyLimiter(2, redis_client, lease_seconds=LONG_LEASE)
    first, second = one.acquire(KEY), two.acquire(KEY)
    assert first is not None
    assert second is not None
    assert one.acquire(KEY) is None
    assert two.acquire(KEY) is None
    two.release(second)
    third = one.acquire(KEY)
    assert third is not None
    for slot, owner in ((first, one), (third, one)):
        owner.release(slot)
    assert redis_client.zcard(KEY) == 0


def test_slot_of_a_crashed_process_is_taken_over_after_its_lease(
    redis_client: redis.Redis,
) -> None:
    crashed = ConcurrencyLimiter(1, redis_client, lease_seconds=LONG_LEASE)
    lost = crashed.acquire(KEY)
    assert lost is not None
    assert lost.holder is not None
    other = ConcurrencyLimiter(1, redis_client, lease_seconds=LONG_LEASE)
    assert other.acquire(KEY) is None  # while the lease runs

    _expire_lease(redis_client, lost.holder)
    taken = other.acquire(KEY)
    assert taken is not None
    assert taken.holder is not None
    crashed.renew_leases()  # a late renewal does not take the slot back
    assert redis_client.zrange(KEY, 0, -1) == [taken.holder.encode()]
    other.release(taken)
    crashed.release(lost)  # its keeper stops renewing (this "crashed" process lives on)


def test_renewed_lease_outlives_its_first_term(redis_client: redis.Redis) -> None:
    mine = ConcurrencyLimiter(1, redis_client, lease_seconds=LONG_LEASE)
    slot = mine.acquire(KEY)
    assert slot is not None
    assert slot.holder is not None
    _expire_lease(redis_client, slot.holder)
    mine.renew_leases()
    assert ConcurrencyLimiter(1, redis_client).acquire(KEY) is None
    mine.release(slot)
    assert redis_client.zcard(KEY) == 0


def test_a_slot_whose_removal_failed_is_removed_by_the_next_flush(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keeper's own removal waits: this test does the next flush itself.
    monkeypatch.setattr(leases, "RELEASE_DELAY_SECONDS", 5.0)
    mine = ConcurrencyLimiter(1, redis_client, lease_seconds=LONG_LEASE)
    slot = mine.acquire(KEY)
    assert slot is not None
    mine.release_later(slot)
    taken = mine.take_released(KEY)  # a rate hit's script was to remove it …
    mine.requeue_released(KEY, taken)  # … but Redis failed under it
    assert redis_client.zcard(KEY) == 1
    mine.flush_released()
    assert redis_client.zcard(KEY) == 0
    other = ConcurrencyLimiter(1, redis_client)
    again = other.acquire(KEY)
    assert again is not None
    other.release(again)


@pytest.mark.parametrize("url", [None, DEAD_REDIS], ids=["embedded", "redis-down"])
def test_without_redis_slots_are_counted_per_process(url: str | None) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.25) if url else None
    errors_before = _sample("trading_redis_errors_total", component="limiter")
    limiter = ConcurrencyLimiter(1, client)
    slot = limiter.acquire(KEY)
    assert slot == Slot(KEY, None)
    assert limiter.acquire(KEY) is None
    limiter.release(slot)
    assert limiter.acquire(KEY) == Slot(KEY, None)
    failures = _sample("trading_redis_errors_total", component="limiter") - errors_before
    assert failures == (3 if url else 0)
