"""Each thread's own Redis connection (service.extensions.ThreadConnections):
the hot paths' commands skip redis-py's pool, and must still survive a
dropped connection and never read another command's reply."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask

from service.cache import get_many_json
from service.extensions import ThreadConnections, thread_connections


def _named_connections(client: redis.Redis, name: str) -> int:
    return sum(c["name"] == name for c in client.client_list())


def test_a_thread_keeps_one_connection_for_its_commands(
    redis_url: str, redis_client: redis.Redis
) -> None:
    app_client = redis.Redis.from_url(f"{redis_url}?client_name=kept-per-thread")
    threads = thread_connections(app_client)
    assert thread_connections(app_client) is threads  # one per client, whoever sends

    assert threads.execute("SET", "k", "v", "EX", 60) == b"OK"
    for _ in range(10):
        assert threads.execute("MGET", "k", "absent") == [b"v", None]
    assert threads.pipeline([("ZADD", "z", 1, "a"), ("ZREM", "z", "a", "b")]) == [1, 1]
    assert _named_connections(redis_client, "kept-per-thread") == 1

    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(threads.execute("GET", "k")))
    thread.start()
    thread.join()
    assert other == [b"v"]  # the other thread on a connection of its own
    app_client.close()


def test_a_connection_redis_dropped_is_replaced_and_the_command_sent_again(
    redis_url: str, redis_client: redis.Redis
) -> None:
    threads = ThreadConnections(redis.Redis.from_url(f"{redis_url}?client_name=dropped"))
    redis_client.set("k", "v")
    assert threads.execute("GET", "k") == b"v"
    redis_client.client_kill_filter(_type="normal", skip_me=True)  # as a restarted Redis does

    assert threads.execute("GET", "k") == b"v"  # no error reaches the caller
    resent: list[bool] = []

    def send(connection: redis.connection.Connection, again: bool) -> Any:
        resent.append(again)
        connection.send_command("GET", "k")
        return connection.read_response()

    redis_client.client_kill_filter(_type="normal", skip_me=True)
    assert threads.run(send) == b"v"
    assert resent == [False, True]  # told that the first run may have reached Redis


def test_an_error_reply_in_a_pipeline_leaves_no_reply_unread(redis_client: redis.Redis) -> None:
    threads = ThreadConnections(redis_client)
    redis_client.set("text", "not a number")
    with pytest.raises(redis.ResponseError):
        threads.pipeline([("INCR", "text"), ("SET", "after", "1")])
    # The next command gets its own reply, not the pipeline's leftover "OK".
    assert threads.execute("GET", "text") == b"not a number"


def test_a_timed_out_reply_is_never_read_as_the_next_ones(
    redis_url: str, redis_client: redis.Redis
) -> None:
    threads = ThreadConnections(redis.Redis.from_url(redis_url, socket_timeout=0.1))
    with pytest.raises(redis.TimeoutError):
        threads.execute("BLPOP", "never", 1)  # Redis answers after the client gave up
    redis_client.rpush("never", "late")
    assert threads.execute("LRANGE", "never", 0, -1) == [b"late"]


def test_a_redis_that_is_away_is_a_redis_error(redis_client: redis.Redis) -> None:
    threads = ThreadConnections(redis.Redis.from_url("redis://127.0.0.1:1/0"))
    with pytest.raises(redis.ConnectionError):
        threads.execute("GET", "k")


def test_a_request_thread_holds_one_connection_for_the_limits_and_the_cache(
    make_app: Callable[..., Flask], redis_url: str, redis_client: redis.Redis
) -> None:
    app = make_app(rate_limit_enabled=True, redis_url=f"{redis_url}?client_name=one-per-thread")
    app.add_url_rule("/probe", view_func=lambda: {"cached": len(get_many_json(["a", "b"]))})
    client = app.test_client()
    for _ in range(5):  # the rate hit and the cache read on this thread's connection
        assert client.get("/probe").status_code == 200
    assert _named_connections(redis_client, "one-per-thread") == 1
