"""What a buy costs the database: statements, commits and connection checkouts
(each checkout pings the connection), so that a regression of the hot path
fails here rather than only in ``make bench``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from service.extensions import db
from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, holdings, ledger, post_buy


@contextmanager
def _round_trips(app: Flask) -> Iterator[Counter[str]]:
    """Counts what reaches PostgreSQL meanwhile: ``statement`` (the first
    word of each), ``commit`` and ``checkout``."""
    seen: Counter[str] = Counter()
    with app.app_context():
        engine = db.engine

    def statement(conn: Any, cursor: Any, sql: str, *_: Any) -> None:
        seen[sql.split(None, 1)[0].upper()] += 1

    def commit(conn: Any) -> None:
        seen["commit"] += 1

    def checkout(*_: Any) -> None:
        seen["checkout"] += 1

    hooks: list[tuple[Any, str, Callable[..., None]]] = [
        (engine, "before_cursor_execute", statement),
        (engine, "commit", commit),
        (engine.pool, "checkout", checkout),
    ]
    for target, name, hook in hooks:
        event.listen(target, name, hook)
    try:
        yield seen
    finally:
        for target, name, hook in hooks:
            event.remove(target, name, hook)


def test_a_buy_takes_five_statements_in_three_short_transactions(
    app: Flask, client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    price = simulator.price("AAPL")
    assert post_buy(client, price, 1).status_code == 201  # portfolio, fresh quote cached

    with _round_trips(app) as seen:
        response = post_buy(client, price, 2)

    assert response.status_code == 201
    # The claim (INSERT), the order counted before it is sent (UPDATE), then
    # the final row (UPDATE), the holding and the day's summary (INSERT … ON
    # CONFLICT each): every order counted before it leaves, the outcome in one
    # transaction.
    assert seen == Counter({"INSERT": 3, "UPDATE": 2, "commit": 3, "checkout": 3})
    assert [row.status for row in ledger()] == ["succeeded", "succeeded"]
    assert holdings()["AAPL"].quantity == 3
