"""The append-only ledger of every buy attempt."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column, relationship

from service.models.base import Base, BigId, Money, UTCDateTime, utcnow
from service.models.resolutions import TransactionResolution


class TransactionStatus(enum.StrEnum):
    """Life cycle of a buy attempt: ``pending`` moves once to a final status."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        return self is not TransactionStatus.PENDING


STATUS_VALUES = ", ".join(f"'{status.value}'" for status in TransactionStatus)


class Transaction(Base):
    """One buy attempt. Rows are never deleted; ``status`` leaves ``pending`` once."""

    __tablename__ = "transactions"
    __table_args__ = (
        CheckConstraint(f"status IN ({STATUS_VALUES})", name="status"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("requested_price > 0", name="requested_price_positive"),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint(
            "(status = 'pending') = (completed_at IS NULL)", name="completed_when_final"
        ),
        UniqueConstraint("user_id", "idempotency_key"),
        Index("ix_transactions_created_at", "created_at"),
        # Finds the unknown attempts to reconcile (and counts them for the metric).
        Index(
            "ix_transactions_unknown",
            "created_at",
            postgresql_where=text("status = 'unknown'"),
            sqlite_where=text("status = 'unknown'"),
        ),
        # Finds attempts interrupted before their final status without a scan.
        Index(
            "ix_transactions_pending",
            "created_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(10))
    quantity: Mapped[int] = mapped_column(Integer)
    requested_price: Mapped[Decimal] = mapped_column(Money)
    market_price: Mapped[Decimal | None] = mapped_column(Money)
    executed_price: Mapped[Decimal | None] = mapped_column(Money)
    total: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default=TransactionStatus.PENDING.value)
    reason: Mapped[str | None] = mapped_column(String(40))
    vendor_status: Mapped[int | None] = mapped_column(SmallInteger)
    vendor_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Loaded with the row (one extra SELECT … IN for a whole page of rows).
    resolution: Mapped[TransactionResolution | None] = relationship(lazy="selectin", viewonly=True)


def _newest_first(name: str, *leading: InstrumentedAttribute[str]) -> Index:
    return Index(name, *leading, Transaction.created_at.desc(), Transaction.id.desc())


# A user's history, newest first (GET /users/{id}/transactions), optionally
# narrowed to one symbol or one status: each is one index range scan.
_newest_first("ix_transactions_user_created", Transaction.user_id)
_newest_first("ix_transactions_user_symbol_created", Transaction.user_id, Transaction.symbol)
_newest_first("ix_transactions_user_status_created", Transaction.user_id, Transaction.status)
