"""The ledger of buy attempts (``transactions``): claim, count orders, look up, finalise once."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Result,
    Table,
    and_,
    bindparam,
    func,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session

from service.models import Transaction, TransactionStatus
from service.repositories import upsert_for

_TABLE: Table = Transaction.__table__  # type: ignore[assignment]


def claim(connection: Connection, values: Mapping[str, Any]) -> int | None:
    """Insert a ``pending`` attempt with the columns in ``values`` (``user_id``,
    ``symbol``, ``quantity``, ``requested_price``, ``idempotency_key``,
    ``request_fingerprint``; ``attempts`` and ``market_price`` when the claim
    counts the first order) and return its id.

    Returns ``None`` instead when the user already has an attempt with this
    ``idempotency_key``: the unique ``(user_id, idempotency_key)`` constraint
    decides, so of concurrent claims with one key exactly one gets an id (the
    others wait for it to commit). Without a key (``None``) it always inserts.
    """
    statement = _claim(connection.dialect.name)
    result = connection.execute(statement, {**_CLAIM_DEFAULTS, **values})
    return result.scalar_one_or_none()


# Columns a claim always sets, so that every claim binds the same parameters.
_CLAIM_DEFAULTS = {
    "idempotency_key": None,
    "request_fingerprint": None,
    "attempts": 0,
    "market_price": None,
}


@functools.cache
def _claim(dialect: str) -> Any:
    # Built once per backend; the values are bound at each execution.
    return (
        upsert_for(dialect, _TABLE)
        .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
        .returning(_TABLE.c.id)
    )


def by_idempotency_key(session: Session, user_id: str, idempotency_key: str) -> Transaction:
    """The user's attempt with ``idempotency_key`` (it must exist)."""
    return session.execute(
        select(Transaction).where(
            Transaction.user_id == user_id, Transaction.idempotency_key == idempotency_key
        )
    ).scalar_one()


def count_order(connection: Connection, transaction_id: int, market_price: Decimal) -> bool:
    """Count one more order of the ``pending`` attempt ``transaction_id`` (and
    note the ``market_price`` it was checked against) before it is sent.

    :returns: ``False`` when the attempt is no longer pending (it was
        finalised meanwhile): then no order may be sent.
    """
    params = {"transaction_id": transaction_id, "checked_price": market_price}
    return connection.execute(_COUNT_ORDER, params).scalar_one_or_none() is not None


_COUNT_ORDER = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("transaction_id"),
        _TABLE.c.status == TransactionStatus.PENDING.value,
    )
    .values(attempts=_TABLE.c.attempts + 1, market_price=bindparam("checked_price"))
    .returning(_TABLE.c.id)
)


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
    and return the updated row, or ``None`` when it is no longer pending
    (another process finalised it). ``values`` hold the columns of
    :data:`FINAL_COLUMNS` (``status``, ``completed_at`` …; a missing one is
    set to none, except that a ``market_price`` or ``attempts`` missing or
    ``None`` keeps the row's own)."""
    params = {**final_params(values), "transaction_id": transaction_id}
    rows = session.connection().execute(_FINALISE_ONE, params)
    return next(iter(as_transactions(rows)), None)


def finalise_pending_before(
    session: Session, cutoff: datetime, values: Mapping[str, Any], *, orders_sent: bool
) -> list[Transaction]:
    """Finalise every attempt still ``pending`` that was created before
    ``cutoff`` and counted an order (``orders_sent``) or none (not
    ``orders_sent``), with ``values`` as :func:`finalise` takes them."""
    counted = _TABLE.c.attempts > 0 if orders_sent else _TABLE.c.attempts == 0
    statement = finalise_where(and_(_TABLE.c.created_at < cutoff, counted))
    return as_transactions(session.connection().execute(statement, final_params(values)))


# The columns a final status sets.
FINAL_COLUMNS = (
    "status",
    "reason",
    "market_price",
    "executed_price",
    "total",
    "vendor_status",
    "vendor_message",
    "attempts",
    "completed_at",
)
_KEPT_UNLESS_GIVEN = ("market_price", "attempts")


def final_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`finalise_where`'s statement for ``values``
    (as :func:`finalise` takes them)."""
    return {f"final_{name}": values.get(name) for name in FINAL_COLUMNS}


def finalise_where(condition: ColumnElement[bool]) -> Any:
    """``UPDATE transactions`` of the ``pending`` rows that meet ``condition``
    to the final values of :func:`final_params` (``updated_at`` too: it is
    the completion time), ``RETURNING`` every column."""
    # "AND status = 'pending'" makes the move happen once: of two concurrent
    # updates, the second re-checks the row after the first commits and skips it.
    final: dict[str, Any] = {}
    for name in FINAL_COLUMNS:
        column = _TABLE.c[name]
        value = bindparam(f"final_{name}", type_=column.type)
        final[name] = func.coalesce(value, column) if name in _KEPT_UNLESS_GIVEN else value
    final["updated_at"] = final["completed_at"]
    return (
        update(_TABLE)
        .where(condition, _TABLE.c.status == TransactionStatus.PENDING.value)
        .values(final)
        .returning(*_TABLE.c)
    )


# A buy's own final write: built once, its values bound at each execution.
_FINALISE_ONE = finalise_where(_TABLE.c.id == bindparam("transaction_id"))


def as_transactions(rows: Result[Any]) -> list[Transaction]:
    """The rows of a statement that returns every ledger column, as
    :class:`Transaction` objects outside the session (no identity map, no
    refresh after the commit)."""
    # A pending row has no resolution (only an ``unknown`` row, already final,
    # can be resolved), so a row just finalised has none.
    return [Transaction(**row, resolution=None) for row in rows.mappings()]
