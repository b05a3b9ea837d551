"""The rate and concurrency limits under a real gunicorn: two workers sharing Redis.

The service is run as ``tests.functional.slow_wsgi:app``: the real app plus a
test-only route (``/test/sleep``) that keeps a request in flight and tells
which worker ran it and when.
"""

from __future__ import annotations

import bisect
import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import cast

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.ratelimit import CONCURRENCY_KEY_PREFIX, LEASE_SECONDS
from tests.bench.harness import RedisServer
from tests.functional.servers import Gunicorn
from tests.unit.test_ratelimit import DOCS_ASSET

pytestmark = pytest.mark.slow

SLOW_APP = "tests.functional.slow_wsgi:app"
CONCURRENCY_KEY = f"{CONCURRENCY_KEY_PREFIX}:global"
RATE = 10  # the default RATE_LIMIT, 10/second
# Time from admission (in the limiter) to the view's clock reading; admission
# times are only known through the view.
VIEW_JITTER_SECONDS = 0.1


def _get(url: str, **params: float) -> requests.Response:
    # A new connection per request, so both workers take requests.
    return requests.get(url, params=params, timeout=40)


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _metric(server: Gunicorn, name: str, **labels: str) -> float:
    text = _get(server.url + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _busiest_second(times: list[float]) -> int:
    """The most admissions inside any window of one second (less the jitter)."""
    times = sorted(times)
    return max(
        bisect.bisect_left(times, start + 1 - VIEW_JITTER_SECONDS) - i
        for i, start in enumerate(times)
    )


def test_no_more_than_the_rate_is_admitted_in_any_second_across_workers(
    gunicorn: Callable[..., Gunicorn], redis_client: redis.Redis
) -> None:
    # Enough concurrency that only the rate limit refuses anything.
    server = gunicorn(SLOW_APP, MAX_CONCURRENT_REQUESTS="50")
    probe = server.url + "/test/sleep"
    responses: list[requests.Response] = []

    def burst(count: int, threads: int = 8) -> list[requests.Response]:
        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(lambda _: _get(probe), range(count)))
        responses.extend(answers)
        return answers

    def admitted(answers: list[requests.Response]) -> int:
        return sum(answer.status_code == 200 for answer in answers)

    assert admitted(burst(1)) == 1
    first = time.monotonic()
    time.sleep(0.8)
    before_edge = burst(15)  # the rest of the first second's budget
    time.sleep(max(0.0, first + 1.15 - time.monotonic()))
    after_edge = burst(15)  # a second later only the first request's place is free
    # A fixed window would admit a fresh 10 after the edge: 19 within ~0.35 s.
    assert admitted(before_edge) + admitted(after_edge) == RATE - 1 + 1

    deadline = time.monotonic() + 1.5  # then steady pressure from four clients
    while time.monotonic() < deadline:
        burst(8, threads=4)

    admitted_times = [r.json()["at"] for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert _busiest_second(admitted_times) <= RATE
    assert len(admitted_times) >= 2 * RATE
    assert refused
    assert {r.status_code for r in refused} == {429}
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limited"}
    assert len({r.json()["pid"] for r in responses if r.status_code == 200}) == 2
    assert _metric(server, "trading_rate_limited_total", limit="rate") == len(refused)


def test_sixth_concurrent_request_gets_429_while_probes_answer(
    gunicorn: Callable[..., Gunicorn], redis_client: redis.Redis
) -> None:
    server = gunicorn(SLOW_APP)  # the defaults: 5 in flight, 10/second
    probe = server.url + "/test/sleep"
    hold = LEASE_SECONDS + 1.5  # longer than a lease: only renewal keeps the slots
    with ThreadPoolExecutor(5) as pool:
        started = time.monotonic()
        slow = [pool.submit(_get, probe, seconds=hold) for _ in range(5)]
        _wait_for(lambda: redis_client.zcard(CONCURRENCY_KEY) == 5)

        sixth = _get(probe)
        assert sixth.status_code == 429
        assert sixth.json()["error"]["code"] == "too_many_concurrent_requests"
        assert sixth.headers["Retry-After"] == "1"
        assert sixth.headers["RateLimit-Limit"] == str(RATE)
        assert "X-Request-ID" in sixth.headers

        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", DOCS_ASSET):
            for _ in range(3):  # 18 in all: more than the rate allows, too
                assert _get(server.url + path).status_code == 200, path

        time.sleep(max(0.0, started + LEASE_SECONDS + 0.5 - time.monotonic()))
        assert _get(probe).status_code == 429  # the leases were renewed
        assert [future.result().status_code for future in slow] == [200] * 5

    assert _get(probe).status_code == 200
    # The last slot is given back just after its response (within milliseconds).
    _wait_for(lambda: redis_client.zcard(CONCURRENCY_KEY) == 0, timeout=1)
    assert _metric(server, "trading_rate_limited_total", limit="concurrency") == 2


def test_slot_of_a_killed_worker_comes_back_within_the_lease(
    gunicorn: Callable[..., Gunicorn], redis_client: redis.Redis
) -> None:
    server = gunicorn(SLOW_APP, MAX_CONCURRENT_REQUESTS="1")
    probe = server.url + "/test/sleep"
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(_get, probe, seconds=30)
        _wait_for(lambda: redis_client.zcard(CONCURRENCY_KEY) == 1)
        [holder] = cast(list[bytes], redis_client.zrange(CONCURRENCY_KEY, 0, -1))
        pid = int(holder.decode().rsplit(":", 2)[1])  # host:pid:random
        assert _get(probe).status_code == 429

        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        while _get(probe).status_code != 200:
            assert time.monotonic() - killed < LEASE_SECONDS + 2, "the slot was not given back"
            time.sleep(0.25)  # slow enough to stay under the rate limit
        with pytest.raises(requests.ConnectionError):
            stuck.result()
    assert time.monotonic() - killed <= LEASE_SECONDS + 1


def test_api_answers_with_redis_stopped(
    gunicorn: Callable[..., Gunicorn], private_redis: RedisServer
) -> None:
    server = gunicorn(SLOW_APP, REDIS_URL=private_redis.url, RATE_LIMIT="5/minute")
    probe = server.url + "/test/sleep"
    assert [_get(probe).status_code for _ in range(6)] == [200] * 5 + [429]

    private_redis.stop()
    answers = [_get(probe) for _ in range(12)]
    assert [answer.status_code for answer in answers] == [200] * 12  # the rate fails open
    assert not any("RateLimit-Limit" in answer.headers for answer in answers)
    assert _get(server.url + "/readyz").json()["status"] == "degraded"
    assert _metric(server, "trading_redis_errors_total", component="limiter") >= 12
