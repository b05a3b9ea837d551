"""Ledger rows for tests, written the way the buy flow writes them: the row
with its final status and its ``daily_summaries`` share in one transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from service.models import Transaction, TransactionStatus
from service.repositories.summaries import add_final


def record(
    session: Session,
    created_at: datetime,
    status: str = "succeeded",
    *,
    user_id: str = "user-1",
    symbol: str = "AAPL",
    quantity: int = 1,
    price: Decimal | str = "100.00",
    reason: str | None = None,
    vendor_status: int | None = None,
    vendor_message: str | None = None,
) -> Transaction:
    """Add one buy attempt (flushed, not committed); final ones are summarised."""
    price = Decimal(price)
    succeeded = status == TransactionStatus.SUCCEEDED
    final = TransactionStatus(status).is_final
    row = Transaction(
        user_id=user_id,
        symbol=symbol,
        quantity=quantity,
        requested_price=price,
        market_price=price,
        executed_price=price if succeeded else None,
        total=price * quantity if succeeded else None,
        status=status,
        reason=reason,
        vendor_status=vendor_status,
        vendor_message=vendor_message,
        attempts=1,
        created_at=created_at,
        updated_at=created_at,
        completed_at=created_at + timedelta(seconds=1) if final else None,
    )
    session.add(row)
    session.flush()
    if final:
        add_final(session, row)
    return row
