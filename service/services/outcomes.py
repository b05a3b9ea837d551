"""A buy's outcome reaches the ledger, even when PostgreSQL is away as the
vendor answers (DESIGN §5: "the outcome is never discarded").

:func:`record` is the one write of an outcome: in one database transaction the
row moves from ``pending`` to its final status (``UPDATE … WHERE status =
'pending'``, so applying an outcome twice credits the holding once), the day's
summary and, on success, the holding are updated.

:func:`settle` is what a buy calls once the vendor has answered. When the
ledger cannot be written it first *keeps* the outcome in Redis (the hash
:data:`OUTCOMES_KEY`, field = transaction id, value = the outcome as JSON),
then retries the write for :data:`RECORD_PATIENCE_SECONDS` (the client is
still waiting). If Redis cannot keep it either, a thread of the worker keeps
retrying the write for a while (best effort: it dies with the process).
A kept outcome is applied later by :func:`apply_kept` (a retry with the
same ``Idempotency-Key``) or :func:`apply_all_kept` (the ``buys sweep`` job,
before it gives up on any pending row), whichever comes first.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from decimal import Decimal

from flask import current_app
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from service.cache import dumps, redis_guard
from service.extensions import autocommit, db, redis_store
from service.logging import log_unsuccessful_buy
from service.metrics import BUYS
from service.models import Transaction, TransactionStatus
from service.models.base import utcnow
from service.repositories import ledger, summaries, transactions
from service.repositories import portfolios as portfolios_repository
from service.services import portfolios
from service.services.orders import ORDER_DEADLINE_SECONDS, Outcome

log = logging.getLogger(__name__)

OUTCOMES_KEY = "buys:outcomes"  # transaction id -> Outcome.as_json(), until applied
# Bounds a hash nobody applies (no sweep running); refreshed by every keep.
OUTCOMES_TTL_SECONDS = 7 * 24 * 3600
# How long a buy waits for the ledger to come back before it answers 503.
RECORD_PATIENCE_SECONDS = 9.0
_RECORD_WAIT_SECONDS = 0.5
# Without Redis, a worker thread retries this long. A last order may be sent
# at the order deadline (half of ABANDONED_AFTER) and take a vendor timeout and
# the buy's own patience; the thread stops a minute before the sweep would
# give up on the pending row, so the two never race.
_BACKGROUND_PATIENCE_SECONDS = ORDER_DEADLINE_SECONDS - 60 - RECORD_PATIENCE_SECONDS
_BACKGROUND_WAIT_SECONDS = 2.0
# The database connection failed (not a bug in the statement): worth retrying.
LEDGER_DOWN = (OperationalError, InterfaceError)


def record(transaction_id: int, outcome: Outcome) -> Transaction:
    """Write ``outcome`` (ledger row, summary, holding) in one database
    transaction and return the row; when the row is no longer ``pending``
    (applied or finalised meanwhile) nothing changes and the row is returned.

    On PostgreSQL the three writes are one statement (one round trip); the
    user's first buy, which creates the portfolio, and SQLite take a session
    transaction.

    :raises SQLAlchemyError: the database could not be written (rolled back).
    """
    now = utcnow()
    values = outcome.ledger_values(now)
    cost = outcome.order.total if outcome.order is not None else None
    with autocommit() as connection:
        row = ledger.finalise_with_effects(connection, transaction_id, values, cost, now)
    if row is None:
        row = _record_in_steps(transaction_id, values, cost)
    if row is None:
        return _already_final(transaction_id, outcome)
    BUYS.labels(row.status, row.reason or "").inc()
    if row.status != TransactionStatus.SUCCEEDED:
        log_unsuccessful_buy(row.id, row.status, row.reason, row.attempts)
    if outcome.order is not None:
        portfolios.invalidate(row.user_id)
    return row


def _record_in_steps(
    transaction_id: int, values: dict[str, object], cost: Decimal | None
) -> Transaction | None:
    """:func:`record`'s writes one statement at a time in a session
    transaction; ``None`` (and nothing written) when the row is no longer
    pending."""
    session = db.session()
    try:
        row = transactions.finalise(session, transaction_id, values)
        if row is None:
            session.rollback()
            return None
        if cost is not None:
            portfolios_repository.add_to_holding(
                session, row.user_id, row.symbol, row.quantity, cost
            )
        summaries.add_final(session, row)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return row


def settle(transaction_id: int, outcome: Outcome) -> Transaction:
    """:func:`record` the vendor's answer; while the ledger is unreachable,
    keep the outcome and retry for :data:`RECORD_PATIENCE_SECONDS`.

    :raises OperationalError | InterfaceError: the ledger is still unreachable;
        the outcome is kept (or retried in the background without Redis) and
        will be applied when PostgreSQL answers.
    :raises SQLAlchemyError: any other database error (not retried, not kept).
    """
    try:
        return record(transaction_id, outcome)
    except LEDGER_DOWN:
        log.warning("ledger unreachable, outcome kept", extra=_about(transaction_id, outcome))
    kept = keep(transaction_id, outcome)
    try:
        row = _patiently(RECORD_PATIENCE_SECONDS, _RECORD_WAIT_SECONDS)(
            record, transaction_id, outcome
        )
    except LEDGER_DOWN:
        if not kept:
            _record_in_background(transaction_id, outcome)
        raise
    if kept:
        _discard(transaction_id)
    return row


def keep(transaction_id: int, outcome: Outcome) -> bool:
    """Keep ``outcome`` in Redis until it is applied; ``False`` when Redis failed."""
    with redis_guard("outcomes") as guard:
        pipe = redis_store.client.pipeline()
        pipe.hset(OUTCOMES_KEY, str(transaction_id), dumps(outcome.as_json()))
        pipe.expire(OUTCOMES_KEY, OUTCOMES_TTL_SECONDS)
        pipe.execute()
    return not guard.failed


def apply_kept(transaction_id: int) -> bool:
    """Apply the kept outcome of ``transaction_id``, if there is one (and Redis
    answers): its row takes its final status. ``True`` when one was applied.

    :raises SQLAlchemyError: the ledger could not be written; it stays kept.
    """
    raw = None
    with redis_guard("outcomes"):
        raw = redis_store.client.hget(OUTCOMES_KEY, str(transaction_id))
    if raw is None:
        return False
    record(transaction_id, Outcome.from_json(json.loads(raw)))
    _discard(transaction_id)
    log.warning("kept buy outcome applied", extra={"transaction_id": transaction_id})
    return True


@dataclass(frozen=True)
class KeptOutcomes:
    """What :func:`apply_all_kept` did: how many it applied, and whether Redis
    could be read at all (if not, some pending rows may have an outcome kept)."""

    applied: int
    readable: bool


def apply_all_kept() -> KeptOutcomes:
    """Apply every kept outcome (the sweep's first step).

    :raises OperationalError | InterfaceError: the ledger is unreachable; what
        is left stays kept.
    """
    kept: dict[bytes | str, bytes | str] = {}
    with redis_guard("outcomes") as guard:
        kept = redis_store.client.hgetall(OUTCOMES_KEY)
    applied = [int(field) for field, raw in kept.items() if _apply_one(int(field), raw)]
    if applied:
        log.warning("kept buy outcomes applied", extra={"transaction_ids": sorted(applied)})
    return KeptOutcomes(len(applied), not guard.failed)


def _apply_one(transaction_id: int, raw: bytes | str) -> bool:
    """Apply one kept outcome; one the ledger refuses (its row is gone, a value
    it cannot store) is logged and stays kept, so it never stops the others.

    :raises OperationalError | InterfaceError: the ledger is unreachable.
    """
    try:
        record(transaction_id, Outcome.from_json(json.loads(raw)))
    except LEDGER_DOWN:
        raise
    except (SQLAlchemyError, ValueError, KeyError, TypeError) as exc:
        log.error(
            "kept buy outcome cannot be applied; it stays kept",
            extra={"transaction_id": transaction_id, "error": repr(exc)},
        )
        return False
    _discard(transaction_id)
    return True


def _discard(transaction_id: int) -> None:
    with redis_guard("outcomes"):
        redis_store.client.hdel(OUTCOMES_KEY, str(transaction_id))


def _already_final(transaction_id: int, outcome: Outcome) -> Transaction:
    row = db.session().get_one(Transaction, transaction_id)
    if row.status != outcome.status.value or row.reason != outcome.reason:
        # The sweep finalised it as abandoned first; its status stands and is reported.
        log.error(
            "buy finished after its attempt had been finalised as abandoned",
            extra=_about(transaction_id, outcome),
        )
    return row


def _patiently(patience: float, wait: float) -> Retrying:
    return Retrying(
        retry=retry_if_exception_type(LEDGER_DOWN),
        stop=stop_after_delay(patience),
        wait=wait_fixed(wait),
        reraise=True,
    )


def _record_in_background(transaction_id: int, outcome: Outcome) -> None:
    """Neither PostgreSQL nor Redis holds the outcome: retry the write from a
    daemon thread of this worker (best effort, lost if the worker dies)."""
    log.error("outcome kept only in this process", extra=_about(transaction_id, outcome))
    context = current_app.app_context()
    retrying = _patiently(_BACKGROUND_PATIENCE_SECONDS, _BACKGROUND_WAIT_SECONDS)

    def run() -> None:
        with context:
            try:
                retrying(record, transaction_id, outcome)
            except LEDGER_DOWN:
                log.error("buy outcome lost", extra=_about(transaction_id, outcome))
            finally:
                db.session.remove()

    threading.Thread(target=run, name=f"outcome-{transaction_id}", daemon=True).start()


def _about(transaction_id: int, outcome: Outcome) -> dict[str, object]:
    return {"transaction_id": transaction_id, "outcome": repr(outcome)}
