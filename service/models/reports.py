"""Incremental daily aggregates and the once-per-day report claim."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from service.models.base import Amount, Base, UTCDateTime, utcnow


class DailySummary(Base):
    """Counts, quantities and amounts per UTC day, final status, reason and symbol.

    Updated in the same database transaction that gives a ledger row its final
    status, so the report never scans the ledger to total a day. ``reason`` is
    ``""`` (not NULL) when there is none, so it can be part of the key.
    """

    __tablename__ = "daily_summaries"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), primary_key=True, default="")
    symbol: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    quantity: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[Decimal] = mapped_column(Amount, default=Decimal(0))


class ReportRun(Base):
    """One row per report day: the claim that makes a report go out once."""

    __tablename__ = "report_runs"
    __table_args__ = (CheckConstraint("state IN ('sending', 'sent', 'failed')", name="state"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str | None] = mapped_column(String(255))
    last_error: Mapped[str | None] = mapped_column(Text)
