"""What a buy costs the database: statements, commits and connection checkouts
(each checkout pings the connection), so that a regression of the hot path
fails here rather than only in ``make bench``."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.connection
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool, QueuePool

from service.app import create_app
from service.config import Settings
from service.extensions import AUTOCOMMIT_BIND, PING_IDLE_AFTER_SECONDS, db
from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, holdings, ledger, post_buy, summaries


@contextmanager
def _round_trips(app: Flask) -> Iterator[Counter[str]]:
    """Counts what reaches PostgreSQL meanwhile: statements (by their first
    word), those sent in ``autocommit`` (each its own transaction: no BEGIN
    and COMMIT round trips), ``commit``, ``checkout`` (from the pool) and
    ``connect`` (a new connection)."""
    seen: Counter[str] = Counter()
    with app.app_context():
        engines = list(db.engines.values())  # the session's, and the autocommit one

    def statement(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        seen[sql.split(None, 1)[0].upper()] += 1
        if cursor.connection.autocommit:
            seen["autocommit"] += 1

    def commit(conn: Any) -> None:
        seen["commit"] += 1

    def checkout(*_: Any) -> None:
        seen["checkout"] += 1

    def connect(*_: Any) -> None:
        seen["connect"] += 1

    hooks: list[tuple[Any, str, Callable[..., None]]] = []
    for engine in engines:
        hooks += [
            (engine, "before_cursor_execute", statement),
            (engine, "commit", commit),
            (engine.pool, "checkout", checkout),
            (engine.pool, "connect", connect),
        ]
    for target, name, hook in hooks:
        event.listen(target, name, hook)
    try:
        yield seen
    finally:
        for target, name, hook in hooks:
            event.remove(target, name, hook)


def test_a_buy_on_a_cached_quote_takes_two_statements_each_its_own_transaction(
    make_app: Callable[..., Flask], simulator: Simulator
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    app = make_app(cache_ttl_seconds=STEADY_REPRICE_SECONDS)  # quotes stay fresh
    client = app.test_client()
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1).status_code == 201  # portfolio, fresh quote cached

    with _round_trips(app) as seen:
        response = post_buy(client, price, 2)

    assert response.status_code == 201
    # The claim, which counts the order as the cached quote lets it through
    # (INSERT), then the outcome: the final row, the holding and the day's
    # summary in one statement (WITH … UPDATE … INSERT … INSERT). Each is
    # atomic by itself and sent in autocommit: two round trips, no BEGIN or
    # COMMIT. Two checkouts; none is pinged, as each connection was used
    # within the last second (pings bypass these events: the last test shows them).
    assert seen == Counter({"INSERT": 1, "WITH": 1, "autocommit": 2, "checkout": 2})
    with app.app_context():
        rows = ledger()
        assert [(row.status, row.attempts) for row in rows] == [("succeeded", 1)] * 2
        assert rows[1].market_price == price
        assert holdings()["AAPL"].quantity == 3
        assert summaries()[("succeeded", "", "AAPL")].quantity == 3


def test_a_buy_on_a_cached_quote_sends_redis_two_commands(
    make_app: Callable[..., Flask], simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    app = make_app(cache_ttl_seconds=STEADY_REPRICE_SECONDS)  # quotes stay fresh
    client = app.test_client()
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1).status_code == 201  # portfolio, fresh quote cached
    sent: list[str] = []
    send_command = redis.connection.Connection.send_command

    def recording(connection: redis.connection.Connection, *args: Any, **options: Any) -> None:
        sent.append(str(args[0]).upper())
        send_command(connection, *args, **options)

    monkeypatch.setattr(redis.connection.Connection, "send_command", recording)
    response = post_buy(client, price, 2)

    assert response.status_code == 201
    # The quote and the circuit's state read together (MGET), the order sent
    # on that state, then the portfolio cache's new generation (SET).
    assert sent == ["MGET", "SET"]
    with app.app_context():
        assert [row.attempts for row in ledger()] == [1, 1]


def test_a_buy_priced_by_the_vendor_counts_its_order_before_sending_it(
    app: Flask, client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1).status_code == 201  # the portfolio exists

    with _round_trips(app) as seen:
        response = post_buy(client, price, 2)

    assert response.status_code == 201
    # No quote fresh enough to trade on (this app's cycle is shorter than the
    # simulator's): the claim (INSERT), the price from the vendor, the order
    # counted once it passed (UPDATE), the outcome (WITH).
    assert seen == Counter({"INSERT": 1, "UPDATE": 1, "WITH": 1, "autocommit": 3, "checkout": 3})
    assert [row.attempts for row in ledger()] == [1, 1]


def test_the_first_buy_creates_the_portfolio_in_one_transaction(
    app: Flask, client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1, user_id="bob").status_code == 201  # quote cached

    with _round_trips(app) as seen:
        response = post_buy(client, price, 2)

    assert response.status_code == 201
    # Alice has no portfolio: the one statement writes nothing (it never
    # records a success it cannot credit), and the outcome is written step by
    # step in one transaction that creates the portfolio.
    assert seen["WITH"] == 1
    assert seen["commit"] == 1
    assert [(row.user_id, row.status) for row in ledger()] == [
        ("bob", "succeeded"),
        ("alice", "succeeded"),
    ]
    assert holdings("alice")["AAPL"].quantity == 2
    assert summaries()[("succeeded", "", "AAPL")].quantity == 3


def test_pooled_connections_killed_while_idle_are_replaced_before_use(
    app: Flask, client: FlaskClient, simulator: Simulator, database_url: str
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1).status_code == 201  # connections now pooled
    # PostgreSQL restarted, a proxy dropped them …: every pooled session is gone.
    killer = create_engine(database_url, poolclass=NullPool)
    with killer.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    killer.dispose()
    time.sleep(PING_IDLE_AFTER_SECONDS + 0.1)

    with _round_trips(app) as seen:
        response = post_buy(client, price, 2)

    assert response.status_code == 201
    assert holdings()["AAPL"].quantity == 3
    assert seen["connect"] >= 1  # the dead connection was replaced


def test_the_autocommit_pool_has_the_sessions_options(app: Flask) -> None:
    with app.app_context():
        session_engine, autocommit_engine = db.engine, db.engines[AUTOCOMMIT_BIND]
    assert autocommit_engine is not session_engine
    pools = [session_engine.pool, autocommit_engine.pool]
    assert all(isinstance(pool, QueuePool) for pool in pools)
    assert [pool.status().split(" Connections")[0] for pool in pools] == ["Pool size: 10 "] * 2


def test_a_buy_against_a_database_that_never_answers_is_a_503_in_seconds(
    make_settings: Callable[..., Settings], simulator: Simulator
) -> None:
    # A server that accepts connections and never speaks (a black-holed
    # PostgreSQL): both pools give up after the connect timeout, not never.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/test"
        app = create_app(make_settings(database_url=url))
        started = time.monotonic()
        response = post_buy(app.test_client(), simulator.price("AAPL"), 1)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert response.status_code == 503
    assert took < 15
    assert simulator.orders() == []
