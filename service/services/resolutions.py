"""Reconciliation of buys whose outcome is ``unknown`` (DESIGN §5, the
``transactions list|resolve`` operator commands).

The vendor may have executed an order whose answer was lost. Once an operator
has confirmed the outcome with the vendor, :func:`resolve` records it
append-only beside the ledger row (whose status stays ``unknown``: what the
service knew) and, for an executed order, credits the holding and moves the
attempt in its day's summary — all in one database transaction, under a lock
of the ledger row, so two operators resolving the same row act once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from service.errors import InvalidInput, ResolutionConflict, TransactionNotFound
from service.extensions import db
from service.models import ResolutionStatus, Transaction, TransactionStatus
from service.models.base import utcnow
from service.money import LEDGER_PLACES, fits_ledger, money_text
from service.repositories import portfolios as portfolios_repository
from service.repositories import resolutions, summaries
from service.services import portfolios

log = logging.getLogger(__name__)

# How long an unknown outcome may wait for its reconciliation before the
# metric (and the chart's alert) counts it.
RECONCILE_WITHIN = timedelta(hours=1)
NAME_MAX_LENGTH = 64


@dataclass(frozen=True)
class Resolved:
    """What :func:`resolve` did: ``changed`` is false when the row already had
    this resolution (the call changed nothing)."""

    transaction: Transaction
    changed: bool


def list_attempts(
    *,
    statuses: Sequence[str] = (),
    since: datetime | None = None,
    user_id: str | None = None,
    only_unresolved: bool = False,
) -> list[Transaction]:
    """Ledger rows for reconciliation, oldest first, each with its resolution
    (filters as :func:`service.repositories.resolutions.attempts`).

    :raises InvalidInput: a status that does not exist.
    """
    unknown = sorted(set(statuses) - {status.value for status in TransactionStatus})
    if unknown:
        raise InvalidInput(
            f"no such status: {', '.join(unknown)}",
            details={"fields": {"status": [f"One of {', '.join(TransactionStatus)}."]}},
        )
    session = db.session()
    rows = resolutions.attempts(
        session, statuses=statuses, since=since, user_id=user_id, only_unresolved=only_unresolved
    )
    session.commit()
    return rows


def resolve(
    transaction_id: int,
    *,
    status: ResolutionStatus,
    by: str,
    note: str,
    executed_price: Decimal | None = None,
) -> Resolved:
    """Record that the ``unknown`` attempt ``transaction_id`` in fact ``status``.

    ``succeeded`` credits the user's holding at ``executed_price`` (default:
    the requested price; total = price × quantity) and moves the attempt from
    ``unknown`` to ``succeeded`` in its own day's summary, then invalidates the
    user's cached portfolios; ``failed`` moves it to ``failed`` in the summary
    and changes no holding. Resolving again with the same outcome (and price)
    changes nothing.

    :returns: the ledger row with its resolution, and whether this call changed it.
    :raises InvalidInput: ``by`` or ``note`` empty or too long, or a bad price;
    :raises TransactionNotFound: no attempt ``transaction_id``;
    :raises ResolutionConflict: the attempt is not ``unknown``, or it was
        resolved with another outcome or price.
    """
    _check_input(status, by, note, executed_price)
    session = db.session()
    row = resolutions.lock_transaction(session, transaction_id)
    if row is None:
        session.rollback()
        raise TransactionNotFound(f"No transaction {transaction_id}.")
    price = executed_price if executed_price is not None else row.requested_price
    if row.status != TransactionStatus.UNKNOWN or row.resolution is not None:
        session.rollback()
        return _already(row, status, executed_price)
    total = price * row.quantity
    resolutions.add(
        session,
        {
            "transaction_id": row.id,
            "status": status.value,
            "executed_price": price if status == ResolutionStatus.SUCCEEDED else None,
            "total": total if status == ResolutionStatus.SUCCEEDED else None,
            "resolved_by": by,
            "note": note,
            "resolved_at": utcnow(),
        },
    )
    if status == ResolutionStatus.SUCCEEDED:
        portfolios_repository.add_to_holding(session, row.user_id, row.symbol, row.quantity, total)
    amount = total if status == ResolutionStatus.SUCCEEDED else summaries.transaction_amount(row)
    summaries.move_resolved(session, row, status.value, amount)
    session.commit()
    if status == ResolutionStatus.SUCCEEDED:
        portfolios.invalidate(row.user_id)
    log.warning(
        "unknown buy resolved by an operator",
        extra={"transaction_id": row.id, "resolution": status.value, "by": by},
    )
    return Resolved(row, changed=True)


def _already(row: Transaction, status: ResolutionStatus, price: Decimal | None) -> Resolved:
    """The answer for a row that is not unresolved-unknown: a no-op when it
    already has exactly this resolution, else :class:`ResolutionConflict`."""
    details = {"transactionId": row.id, "status": row.status}
    earlier = row.resolution
    if earlier is None:
        raise ResolutionConflict(
            f"Transaction {row.id} is {row.status}: only an unknown outcome can be resolved.",
            details=details,
        )
    details.update(resolution=earlier.status, resolvedBy=earlier.resolved_by)
    if earlier.status == status and price in (None, earlier.executed_price):
        return Resolved(row, changed=False)
    shown = f" at {money_text(earlier.executed_price)}" if earlier.executed_price else ""
    raise ResolutionConflict(
        f"Transaction {row.id} was already resolved as {earlier.status}{shown} by "
        f"{earlier.resolved_by} at {earlier.resolved_at.isoformat(timespec='seconds')}; "
        "a resolution is never changed.",
        details=details,
    )


def _check_input(
    status: ResolutionStatus, by: str, note: str, executed_price: Decimal | None
) -> None:
    fields: dict[str, list[str]] = {}
    if not by.strip() or len(by) > NAME_MAX_LENGTH:
        fields["by"] = [f"1–{NAME_MAX_LENGTH} characters."]
    if not note.strip():
        fields["note"] = ["Say how the outcome was confirmed."]
    if executed_price is not None:
        if status != ResolutionStatus.SUCCEEDED:
            fields["executedPrice"] = ["Only an executed (succeeded) order has a price."]
        elif not fits_ledger(executed_price) or executed_price <= 0:
            fields["executedPrice"] = [f"A positive price with at most {LEDGER_PLACES} decimals."]
    if fields:
        raise InvalidInput(details={"fields": fields})


def unresolved_state(app: Flask) -> Iterator[Metric]:
    """``trading_unresolved_unknown_orders``: unknown attempts older than
    :data:`RECONCILE_WITHIN` that no operator has resolved, counted at scrape
    time (one index range scan). Always declared; no sample when the database
    cannot be read. Not registered here: the app factory registers it.
    """
    gauge = GaugeMetricFamily(
        "trading_unresolved_unknown_orders",
        "Buys whose outcome has been unknown for over an hour and that no operator has resolved.",
    )
    with app.app_context():
        try:
            cutoff = utcnow() - RECONCILE_WITHIN
            gauge.add_metric([], resolutions.count_unresolved_before(db.session(), cutoff))
        except SQLAlchemyError as exc:
            log.warning("unresolved orders unavailable", extra={"error": type(exc).__name__})
        finally:
            db.session.remove()
    yield gauge
