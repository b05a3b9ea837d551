"""Portfolios and holdings: created and grown by atomic upserts, read per user."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from sqlalchemy import Result, Select, bindparam, literal, select
from sqlalchemy.orm import Session

from service.models import Holding, Portfolio
from service.models.base import utcnow
from service.models.portfolios import DEFAULT_PORTFOLIO
from service.repositories import upsert, upsert_for


def ensure_portfolio(session: Session, user_id: str, name: str = DEFAULT_PORTFOLIO) -> int:
    """The id of the user's portfolio ``name``, created when it does not exist yet
    (concurrent first buys create it once)."""
    # One statement for every buy after the user's first; the insert only when
    # the portfolio is missing. An insert that returns nothing lost a race to
    # another transaction, whose row the next statement (a new snapshot) sees.
    found = _portfolio_id(session, user_id, name).scalar_one_or_none()
    if found is None:
        found = session.execute(
            upsert(session, Portfolio.__table__)
            .values(user_id=user_id, name=name)
            .on_conflict_do_nothing(index_elements=["user_id", "name"])
            .returning(Portfolio.id)
        ).scalar_one_or_none()
    if found is None:
        found = _portfolio_id(session, user_id, name).scalar_one()
    return found


def _portfolio_id(session: Session, user_id: str, name: str) -> Result[Any]:
    return session.execute(
        select(Portfolio.id).where(Portfolio.user_id == user_id, Portfolio.name == name)
    )


def add_to_holding(
    session: Session,
    user_id: str,
    symbol: str,
    quantity: int,
    cost: Decimal,
    portfolio: str = DEFAULT_PORTFOLIO,
) -> None:
    """Add ``quantity`` shares bought for ``cost`` to the holding of ``symbol``
    in the user's ``portfolio`` (created when missing).

    One ``INSERT INTO holdings … SELECT`` the portfolio's id ``… ON CONFLICT DO
    UPDATE SET quantity = holdings.quantity + …``: the database adds to the
    current row, so concurrent buys never lose an update, and one statement
    finds the portfolio and credits it. It inserts nothing only when the
    portfolio does not exist yet (the user's first buy): then it is created
    and the statement runs again (a new snapshot, which sees it).
    """
    params = {
        "user_id": user_id,
        "portfolio": portfolio,
        "symbol": symbol,
        "quantity": quantity,
        "cost": cost,
        "credited_at": utcnow(),
    }
    connection = session.connection()
    statement = _add_to_holding(connection.dialect.name)
    if connection.execute(statement, params).rowcount == 0:
        ensure_portfolio(session, user_id, portfolio)
        connection.execute(statement, params)


@functools.cache
def _add_to_holding(dialect: str) -> Any:
    # Built once per backend; the values are bound at each execution.
    found = select(
        Portfolio.id,
        bindparam("symbol", type_=Holding.symbol.type),
        bindparam("quantity", type_=Holding.quantity.type),
        bindparam("cost", type_=Holding.cost_basis.type),
        literal(1),
        bindparam("credited_at", type_=Holding.updated_at.type),
    ).where(Portfolio.user_id == bindparam("user_id"), Portfolio.name == bindparam("portfolio"))
    return credit_holdings(upsert_for(dialect, Holding.__table__), found)


def credit_holdings(insert: Any, found: Select[Any]) -> Any:
    """``insert`` (an ``INSERT INTO holdings`` builder) of the rows ``found``
    (portfolio id, symbol, quantity, cost, version 1, time), added to the
    holding when there is one: ``ON CONFLICT DO UPDATE SET quantity =
    holdings.quantity + …``, so concurrent buys never lose an update."""
    columns = ["portfolio_id", "symbol", "quantity", "cost_basis", "version", "updated_at"]
    credit = insert.from_select(columns, found, include_defaults=False)
    return credit.on_conflict_do_update(
        index_elements=["portfolio_id", "symbol"],
        set_={
            "quantity": Holding.quantity + credit.excluded.quantity,
            "cost_basis": Holding.cost_basis + credit.excluded.cost_basis,
            "version": Holding.version + 1,
            "updated_at": credit.excluded.updated_at,
        },
    )


def portfolios_of(session: Session, user_id: str) -> list[Portfolio]:
    """The user's portfolios, oldest first, with their holdings loaded (by symbol)."""
    return list(
        session.scalars(
            select(Portfolio)
            .where(Portfolio.user_id == user_id)
            .order_by(Portfolio.created_at, Portfolio.id)
        ).all()
    )
