"""The ledger of buy attempts (``transactions``): claim, count orders, look up, finalise once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, select, tuple_, update
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from service.models import Transaction, TransactionStatus
from service.repositories import upsert


def claim(session: Session, values: Mapping[str, Any]) -> int | None:
    """Insert a ``pending`` attempt with the columns in ``values`` (``user_id``,
    ``symbol``, ``quantity``, ``requested_price``, ``idempotency_key``,
    ``request_fingerprint``) and return its id.

    Returns ``None`` instead when the user already has an attempt with this
    ``idempotency_key``: the unique ``(user_id, idempotency_key)`` constraint
    decides, so of concurrent claims with one key exactly one gets an id (the
    others wait for it to commit). Without a key (``None``) it always inserts.
    """
    statement = (
        upsert(session, Transaction.__table__)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
        .returning(Transaction.id)
    )
    return session.execute(statement).scalar_one_or_none()


def by_idempotency_key(session: Session, user_id: str, idempotency_key: str) -> Transaction:
    """The user's attempt with ``idempotency_key`` (it must exist)."""
    return session.execute(
        select(Transaction).where(
            Transaction.user_id == user_id, Transaction.idempotency_key == idempotency_key
        )
    ).scalar_one()


def count_order(session: Session, transaction_id: int, market_price: Decimal) -> bool:
    """Count one more order of the ``pending`` attempt ``transaction_id`` (and
    note the ``market_price`` it was checked against) before it is sent.

    :returns: ``False`` when the attempt is no longer pending (it was
        finalised meanwhile): then no order may be sent.
    """
    statement = (
        update(Transaction)
        .where(
            Transaction.id == transaction_id,
            Transaction.status == TransactionStatus.PENDING.value,
        )
        .values(attempts=Transaction.attempts + 1, market_price=market_price)
        .returning(Transaction.id)
    )
    options = {"synchronize_session": False}
    return session.execute(statement, execution_options=options).scalar_one_or_none() is not None


@dataclass(frozen=True)
class HistoryFilter:
    """Which of a user's attempts a history shows: one of ``statuses`` (all
    when empty), of ``symbol``, created in ``[start, end)``, with
    ``idempotency_key`` (``None``: no condition)."""

    statuses: Sequence[str] = ()
    symbol: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    idempotency_key: str | None = None


def history(
    session: Session,
    user_id: str,
    where: HistoryFilter,
    *,
    before: tuple[datetime, int] | None,
    limit: int,
) -> list[Transaction]:
    """The user's attempts that match ``where``, newest first (``created_at``,
    then ``id``), at most ``limit``, only those older than the position
    ``before`` (``created_at``, ``id``) when given: a keyset page, so rows
    added meanwhile (all newer) never shift it. One range scan of
    ``ix_transactions_user_created`` (or its symbol/status siblings)."""
    conditions: list[ColumnElement[bool]] = [Transaction.user_id == user_id]
    if where.statuses:
        conditions.append(Transaction.status.in_(where.statuses))
    if where.symbol is not None:
        conditions.append(Transaction.symbol == where.symbol)
    if where.start is not None:
        conditions.append(Transaction.created_at >= where.start)
    if where.end is not None:
        conditions.append(Transaction.created_at < where.end)
    if where.idempotency_key is not None:
        conditions.append(Transaction.idempotency_key == where.idempotency_key)
    if before is not None:
        conditions.append(tuple_(Transaction.created_at, Transaction.id) < tuple_(*before))
    statement = (
        select(Transaction)
        .where(*conditions)
        .order_by(Transaction.created_at.desc(), Transaction.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def of_user(session: Session, user_id: str, transaction_id: int) -> Transaction | None:
    """The user's attempt ``transaction_id``; ``None`` when there is none
    (another user's attempt included)."""
    return session.execute(
        select(Transaction).where(Transaction.id == transaction_id, Transaction.user_id == user_id)
    ).scalar_one_or_none()


def finalise(
    session: Session, transaction_id: int, values: Mapping[str, Any]
) -> Transaction | None:
    """Move attempt ``transaction_id`` from ``pending`` to its final status
    (``values`` hold ``status``, ``completed_at`` …) and return the updated row,
    or ``None`` when it is no longer pending (another process finalised it)."""
    rows = _finalise_pending(session, Transaction.id == transaction_id, values)
    return rows[0] if rows else None


def finalise_pending_before(
    session: Session, cutoff: datetime, values: Mapping[str, Any], *, orders_sent: bool
) -> list[Transaction]:
    """Finalise every attempt still ``pending`` that was created before
    ``cutoff`` and counted an order (``orders_sent``) or none (not ``orders_sent``)."""
    counted = Transaction.attempts > 0 if orders_sent else Transaction.attempts == 0
    return _finalise_pending(session, and_(Transaction.created_at < cutoff, counted), values)


def _finalise_pending(
    session: Session, condition: ColumnElement[bool], values: Mapping[str, Any]
) -> list[Transaction]:
    # "AND status = 'pending'" makes the move happen once: of two concurrent
    # updates, the second re-checks the row after the first commits and skips it.
    # A pending row has no resolution (only an ``unknown`` row, already final,
    # can be resolved): it is set to none here instead of a SELECT finding none.
    statement = (
        update(Transaction)
        .where(condition, Transaction.status == TransactionStatus.PENDING.value)
        .values(**values)
        .returning(Transaction)
        .options(lazyload(Transaction.resolution))
    )
    # populate_existing: a row the session already holds (read while pending)
    # takes the values just written, not its stale ones.
    options = {"synchronize_session": False, "populate_existing": True}
    rows = list(session.scalars(statement, execution_options=options).all())
    for row in rows:
        set_committed_value(row, "resolution", None)
    return rows
