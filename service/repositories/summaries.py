"""Incremental daily aggregates (``daily_summaries``)."""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, case
from sqlalchemy.orm import Session

from service.models import DailySummary, Transaction, TransactionStatus
from service.repositories import upsert_for


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
    _add(
        session,
        transaction,
        transaction.status,
        transaction.reason,
        1,
        transaction_amount(transaction),
    )


def move_resolved(session: Session, transaction: Transaction, status: str, amount: Decimal) -> None:
    """Count an ``unknown`` transaction that an operator resolved as ``status``
    under that status in its own UTC day's aggregates, for ``amount`` (what
    was paid when it succeeded, what was asked otherwise): it leaves its
    ``unknown`` row and joins the ``status`` one (the reason stays on a
    failure, none on a success), atomically like :func:`add_final`.

    Call it in the same database transaction that records the resolution.
    """
    if transaction.status != TransactionStatus.UNKNOWN:
        raise ValueError("only unknown transactions are resolved")
    _add(
        session,
        transaction,
        transaction.status,
        transaction.reason,
        -1,
        -transaction_amount(transaction),
    )
    reason = None if status == TransactionStatus.SUCCEEDED else transaction.reason
    _add(session, transaction, status, reason, 1, amount)


def _add(
    session: Session,
    transaction: Transaction,
    status: str,
    reason: str | None,
    count: int,
    amount: Decimal,
) -> None:
    """Add ``count`` attempts (negative: take away) of ``transaction``'s day,
    symbol and quantity, for ``amount``, to the ``(status, reason)`` row."""
    params = {
        "day": transaction.created_at.date(),
        "status": status,
        "reason": reason or "",
        "symbol": transaction.symbol,
        "count": count,
        "quantity": count * transaction.quantity,
        "amount": amount,
    }
    connection = session.connection()
    connection.execute(_add_statement(connection.dialect.name), params)


@functools.cache
def _add_statement(dialect: str) -> Any:
    # Built once per backend; the values are bound at each execution.
    return add_to_summaries(upsert_for(dialect, DailySummary.__table__))


def add_to_summaries(insert: Any) -> Any:
    """``insert`` (an ``INSERT INTO daily_summaries`` builder, its rows given)
    added to the day's row when there is one: ``ON CONFLICT DO UPDATE SET
    count = daily_summaries.count + …``, so concurrent buys never lose an update."""
    return insert.on_conflict_do_update(
        index_elements=["day", "status", "reason", "symbol"],
        set_={
            "count": DailySummary.count + insert.excluded.count,
            "quantity": DailySummary.quantity + insert.excluded.quantity,
            "amount": DailySummary.amount + insert.excluded.amount,
        },
    )


def amount_of(row: Any) -> ColumnElement[Decimal]:
    """:func:`transaction_amount` in SQL, of ``row`` (a selectable with the
    ledger's columns)."""
    succeeded = and_(row.c.status == TransactionStatus.SUCCEEDED.value, row.c.total.is_not(None))
    return case((succeeded, row.c.total), else_=row.c.requested_price * row.c.quantity)
