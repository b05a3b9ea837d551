"""Portfolios and the holdings derived from a user's own succeeded buys."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.models.base import Amount, Base, BigId, UTCDateTime, utcnow

DEFAULT_PORTFOLIO = "default"


class Portfolio(Base):
    """A named portfolio of one user; the first buy creates ``default``."""

    __tablename__ = "portfolios"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64), default=DEFAULT_PORTFOLIO)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    holdings: Mapped[list[Holding]] = relationship(
        back_populates="portfolio", order_by="Holding.symbol", lazy="selectin"
    )


class Holding(Base):
    """Quantity and cost basis of one symbol in one portfolio.

    Updated with an atomic upsert (``quantity = quantity + n``); ``version``
    counts the updates, so readers can tell a holding changed.
    """

    __tablename__ = "holdings"
    __table_args__ = (
        UniqueConstraint("portfolio_id", "symbol"),
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        CheckConstraint("cost_basis >= 0", name="cost_basis_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id", ondelete="RESTRICT"))
    symbol: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_basis: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))
    version: Mapped[int] = mapped_column(BigInteger, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    portfolio: Mapped[Portfolio] = relationship(back_populates="holdings")
