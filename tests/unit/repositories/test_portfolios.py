"""The portfolio repository on PostgreSQL: one default portfolio, holdings that add up."""

from __future__ import annotations

from decimal import Decimal

from flask import Flask

from service.extensions import db
from service.repositories import portfolios


def test_the_portfolio_is_created_once(app: Flask) -> None:
    session = db.session()
    first = portfolios.ensure_portfolio(session, "alice")
    assert portfolios.ensure_portfolio(session, "alice") == first
    assert portfolios.ensure_portfolio(session, "bob") != first


def test_holdings_add_quantity_and_cost(app: Flask) -> None:
    session = db.session()
    # The first credit creates the user's portfolio.
    portfolios.add_to_holding(session, "alice", "PNNY", 4, Decimal("0.98"))
    portfolios.add_to_holding(session, "alice", "PNNY", 3, Decimal("0.764997"))
    portfolios.add_to_holding(session, "alice", "AAPL", 1, Decimal("220.67"))
    session.commit()

    (portfolio,) = portfolios.portfolios_of(session, "alice")
    assert portfolio.name == "default"
    penny, apple = sorted(portfolio.holdings, key=lambda h: h.symbol, reverse=True)
    assert (penny.symbol, penny.quantity, penny.cost_basis, penny.version) == (
        "PNNY",
        7,
        Decimal("1.744997"),
        2,
    )
    assert (apple.quantity, apple.cost_basis, apple.version) == (1, Decimal("220.67"), 1)
    assert portfolios.portfolios_of(session, "nobody") == []
