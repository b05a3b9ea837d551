"""Reconciliation of ``unknown`` attempts: operators' resolutions
(``transaction_resolutions``) and the ledger queries that find what is left to
reconcile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, select
from sqlalchemy.orm import Session

from service.models import Transaction, TransactionResolution, TransactionStatus


def lock_transaction(session: Session, transaction_id: int) -> Transaction | None:
    """The ledger row ``transaction_id``, locked (``FOR UPDATE``) until the
    session's transaction ends, with its resolution; ``None`` if there is none."""
    return session.execute(
        select(Transaction)
        .where(Transaction.id == transaction_id)
        .with_for_update(of=Transaction)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def add(session: Session, values: Mapping[str, Any]) -> TransactionResolution:
    """Insert a resolution (``transaction_id``, ``status``, ``executed_price``,
    ``total``, ``resolved_by``, ``note``, ``resolved_at``); flushed, so the
    unique ``transaction_id`` refuses a second one here."""
    resolution = TransactionResolution(**values)
    session.add(resolution)
    session.flush()
    return resolution


def unresolved() -> ColumnElement[bool]:
    """Attempts whose outcome is ``unknown`` and no operator has resolved."""
    resolved = exists().where(TransactionResolution.transaction_id == Transaction.id)
    return and_(Transaction.status == TransactionStatus.UNKNOWN.value, ~resolved)


def attempts(
    session: Session,
    *,
    statuses: Sequence[str] = (),
    since: datetime | None = None,
    user_id: str | None = None,
    only_unresolved: bool = False,
) -> list[Transaction]:
    """Ledger rows, oldest first, with their resolutions: those with one of
    ``statuses`` (all when empty), created at ``since`` or later, of ``user_id``,
    and with ``only_unresolved`` only the unknown ones still to reconcile."""
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(Transaction.status.in_(statuses))
    if since is not None:
        conditions.append(Transaction.created_at >= since)
    if user_id is not None:
        conditions.append(Transaction.user_id == user_id)
    if only_unresolved:
        conditions.append(unresolved())
    return list(
        session.scalars(
            select(Transaction).where(*conditions).order_by(Transaction.created_at, Transaction.id)
        )
    )


def unresolved_before(session: Session, end: datetime, limit: int) -> list[Transaction]:
    """The first ``limit`` unresolved unknown attempts created before ``end``, oldest first."""
    return list(
        session.scalars(
            select(Transaction)
            .where(unresolved(), Transaction.created_at < end)
            .order_by(Transaction.created_at, Transaction.id)
            .limit(limit)
        )
    )


def count_unresolved_before(session: Session, end: datetime) -> int:
    """How many unresolved unknown attempts were created before ``end`` (an
    index range scan of the unknown attempts)."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Transaction)
            .where(unresolved(), Transaction.created_at < end)
        ).scalar_one()
    )


def resolved_between(
    session: Session, start: datetime, end: datetime
) -> list[tuple[TransactionResolution, Transaction]]:
    """Resolutions made in ``[start, end)`` with their attempts, in the order made."""
    rows = session.execute(
        select(TransactionResolution, Transaction)
        .join(Transaction, Transaction.id == TransactionResolution.transaction_id)
        .where(TransactionResolution.resolved_at >= start, TransactionResolution.resolved_at < end)
        .order_by(TransactionResolution.resolved_at, TransactionResolution.id)
    )
    return [(resolution, transaction) for resolution, transaction in rows]
