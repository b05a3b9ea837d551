"""Incremental daily aggregates (``daily_summaries``)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.orm import Session

from service.models import DailySummary, Transaction, TransactionStatus
from service.repositories import upsert


def transaction_amount(transaction: Transaction) -> Decimal:
    """The value a transaction counts for: what was paid when it succeeded,
    what was asked (price × quantity) otherwise."""
    if transaction.status == TransactionStatus.SUCCEEDED and transaction.total is not None:
        return transaction.total
    return transaction.requested_price * transaction.quantity


def add_final(session: Session, transaction: Transaction) -> None:
    """Add a transaction that just reached its final status to its UTC day's
    aggregate row — atomically, so concurrent buys never lose an update.

    Call it in the same database transaction that sets the final status.
    """
    if not TransactionStatus(transaction.status).is_final:
        raise ValueError("only final transactions are summarised")
    amount = transaction_amount(transaction)
    insert = upsert(session, DailySummary.__table__).values(
        day=transaction.created_at.date(),
        status=transaction.status,
        reason=transaction.reason or "",
        symbol=transaction.symbol,
        count=1,
        quantity=transaction.quantity,
        amount=amount,
    )
    session.execute(
        insert.on_conflict_do_update(
            index_elements=["day", "status", "reason", "symbol"],
            set_={
                "count": DailySummary.count + 1,
                "quantity": DailySummary.quantity + insert.excluded.quantity,
                "amount": DailySummary.amount + insert.excluded.amount,
            },
        )
    )
