"""Portfolios and holdings: created and grown by atomic upserts, read per user."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Result, select
from sqlalchemy.orm import Session

from service.models import Holding, Portfolio
from service.models.portfolios import DEFAULT_PORTFOLIO
from service.repositories import upsert


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
    session: Session, portfolio_id: int, symbol: str, quantity: int, cost: Decimal
) -> None:
    """Add ``quantity`` shares bought for ``cost`` to the holding of ``symbol``.

    One ``INSERT … ON CONFLICT DO UPDATE SET quantity = holdings.quantity + …``:
    the database adds to the current row, so concurrent buys never lose an update.
    """
    insert = upsert(session, Holding.__table__).values(
        portfolio_id=portfolio_id, symbol=symbol, quantity=quantity, cost_basis=cost
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["portfolio_id", "symbol"],
            set_={
                "quantity": Holding.quantity + insert.excluded.quantity,
                "cost_basis": Holding.cost_basis + insert.excluded.cost_basis,
                "version": Holding.version + 1,
                "updated_at": insert.excluded.updated_at,
            },
        )
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
