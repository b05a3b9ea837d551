"""Daily aggregates: sums of many transactions never overflow."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from flask import Flask
from sqlalchemy import select

from service.extensions import db
from service.models import DailySummary, Holding
from service.repositories import portfolios
from tests.ledger import record

LARGEST_PRICE = "99999999.999999"  # just under the API's bound of 10^8
LARGEST_QUANTITY = 1_000_000


def test_a_day_of_the_largest_attempts_adds_up_exactly(app: Flask) -> None:
    session = db.session()
    noon = datetime(2026, 11, 23, 12, tzinfo=UTC)
    for _ in range(3):  # each alone fits a transaction's NUMERIC(20, 6); their sum does not
        record(session, noon, "rejected", reason="price_out_of_tolerance",
               price=LARGEST_PRICE, quantity=LARGEST_QUANTITY)  # fmt: skip
    session.commit()

    [summary] = db.session.scalars(select(DailySummary)).all()
    assert summary.count == 3
    assert summary.amount == Decimal(LARGEST_PRICE) * LARGEST_QUANTITY * 3


def test_a_holding_of_the_largest_buys_adds_up_exactly(app: Flask) -> None:
    session = db.session()
    total = Decimal(LARGEST_PRICE) * LARGEST_QUANTITY
    for _ in range(3):
        portfolios.add_to_holding(session, "whale", "AAPL", LARGEST_QUANTITY, total)
    session.commit()

    [holding] = db.session.scalars(select(Holding)).all()
    assert holding.cost_basis == total * 3
