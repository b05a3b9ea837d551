"""Operators' resolutions of attempts whose outcome was ``unknown``."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Base, BigId, Money, UTCDateTime, utcnow


class ResolutionStatus(enum.StrEnum):
    """What the vendor confirmed an ``unknown`` order became."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


class TransactionResolution(Base):
    """An operator's record of an ``unknown`` attempt's true outcome.

    Append-only, and at most one per attempt (the unique ``transaction_id``
    decides between concurrent resolutions). The ledger row keeps its status
    (``unknown``: what the service knew) and shows this beside it. The
    operator's name is ``resolved_by`` because ``BY`` is an SQL keyword.
    """

    __tablename__ = "transaction_resolutions"
    __table_args__ = (
        CheckConstraint("status IN ('succeeded', 'failed')", name="status"),
        CheckConstraint(
            "(status = 'succeeded') = (executed_price IS NOT NULL AND total IS NOT NULL)",
            name="priced_when_succeeded",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(BigId, ForeignKey("transactions.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    executed_price: Mapped[Decimal | None] = mapped_column(Money)
    total: Mapped[Decimal | None] = mapped_column(Money)
    resolved_by: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
