"""Helpers of the buy and portfolio tests: send a buy, read what the database holds."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from flask.testing import FlaskClient
from sqlalchemy import select, update
from werkzeug.test import TestResponse

from service.extensions import db
from service.models import DailySummary, Holding, Portfolio, Transaction
from service.models.base import utcnow
from service.repositories import transactions
from service.vendorapi.simulator import Simulator

# Prices hold still for the length of any test (the vendor reprices once per cycle).
STEADY_REPRICE_SECONDS = 1_000_000


def buy_body(price: Decimal | str, quantity: int = 1, user_id: str = "alice") -> str:
    """A buy request body; a Decimal price is written as an exact JSON number."""
    price_json = json.dumps(price) if isinstance(price, str) else format(price, "f")
    return f'{{"userId": {json.dumps(user_id)}, "price": {price_json}, "quantity": {quantity}}}'


def post_buy(
    client: FlaskClient,
    price: Decimal | str,
    quantity: int = 1,
    *,
    symbol: str = "AAPL",
    user_id: str = "alice",
    key: str | None = None,
) -> TestResponse:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return client.post(
        f"/stocks/{symbol}/buy",
        data=buy_body(price, quantity, user_id),
        content_type="application/json",
        headers=headers,
    )


def claim(key: str | None = None, user_id: str = "alice") -> int | None:
    """Claim a pending attempt (2 AAPL at 10.5) as a buy does, uncommitted."""
    order = {"symbol": "AAPL", "quantity": 2, "requested_price": Decimal("10.5")}
    return transactions.claim(
        db.session().connection(),
        {**order, "user_id": user_id, "idempotency_key": key, "request_fingerprint": "f"},
    )


def pending(user_id: str = "alice", *, age: timedelta, orders: int = 0) -> int:
    """A committed pending attempt (as :func:`claim`) created ``age`` ago that
    counted ``orders`` orders: what a worker that crashed mid-buy leaves behind."""
    session = db.session()
    transaction_id = claim(user_id=user_id)
    assert transaction_id is not None
    session.execute(
        update(Transaction)
        .where(Transaction.id == transaction_id)
        .values(created_at=utcnow() - age, attempts=orders)
    )
    session.commit()
    return transaction_id


def ledger() -> list[Transaction]:
    """Every ledger row, oldest first, as committed right now."""
    db.session.remove()
    return list(db.session.scalars(select(Transaction).order_by(Transaction.id)))


def holdings(user_id: str = "alice") -> dict[str, Holding]:
    """The user's holdings by symbol, as committed right now."""
    db.session.remove()
    rows = db.session.scalars(select(Holding).join(Portfolio).where(Portfolio.user_id == user_id))
    return {row.symbol: row for row in rows}


def summaries() -> dict[tuple[str, str, str], DailySummary]:
    """Daily summary rows by (status, reason, symbol)."""
    db.session.remove()
    return {
        (row.status, row.reason, row.symbol): row
        for row in db.session.scalars(select(DailySummary))
    }


def vendor_buys(simulator: Simulator) -> int:
    """How many order requests reached the vendor."""
    return simulator.stats()["requests"]["buy"]


def at_price(simulator: Simulator, symbol: str, price: Decimal) -> None:
    """Move the simulator's clock, cycle by cycle, until ``symbol`` costs ``price``.

    Prices are steady for the test (:data:`STEADY_REPRICE_SECONDS`).
    """
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)
    for _ in range(100):
        if simulator.price(symbol) == price:
            return
        simulator.advance(STEADY_REPRICE_SECONDS)
    raise AssertionError(f"{symbol} never cost {price}")
