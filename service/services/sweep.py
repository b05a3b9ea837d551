"""The sweep of abandoned buy attempts (DESIGN §6, ``buys sweep``).

A worker killed between a buy's claim and its finish, or one that could not
write the outcome, leaves a ``pending`` row. :func:`finalise_abandoned` first
applies every outcome kept while the ledger was away
(:mod:`service.services.outcomes`: such a row reaches its true status), then
ends the rows still pending: ``failed`` (``no_order_sent``) when no order was
counted, ``unknown`` (``interrupted``) when one may have been sent. The
``buys sweep`` CronJob runs :func:`sweep` every minute and records each
successful run in Redis, which the web pods export through
:func:`sweep_state` (the job's own pod is never scraped). The report job and
an idempotent replay call :func:`finalise_abandoned` too, when they must not
read a stale ``pending``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from flask import Flask
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from service.cache import JOB_RECORD_SECONDS, redis_guard
from service.extensions import db, redis_store
from service.metrics import BUYS
from service.models import TransactionStatus
from service.models.base import utcnow
from service.repositories import summaries, transactions
from service.services import outcomes
from service.services.orders import ABANDONED_AFTER, Outcome

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"  # the worker died after an order may have been sent
NO_ORDER_SENT = "no_order_sent"  # the worker died before it sent any order
LAST_SUCCESS_KEY = "buys:sweep:last_success"  # Unix time of the last successful run
# How many attempts have been finalised as abandoned, by any process: the sweep
# runs in CronJob pods that are never scraped, so the web pods export this.
FINALISED_KEY = "buys:sweep:finalised_total"
# Both keys are rewritten at each run (the count: at each finalisation) and
# live JOB_RECORD_SECONDS; a count untouched that long restarts at 0, which
# Prometheus reads as a reset.


def finalise_abandoned(older_than: timedelta = ABANDONED_AFTER) -> int:
    """Apply every kept outcome, then end attempts left ``pending`` for longer
    than ``older_than`` (their worker died): ``failed`` (``no_order_sent``)
    when they counted no order, else ``unknown`` (``interrupted``), updating
    the daily summaries. While the kept outcomes cannot be read (Redis down),
    attempts that counted an order are left pending for a later run: one of
    them may have an outcome kept.

    ``older_than`` must exceed the longest a buy can take (the default does:
    no order is sent after half of it), or a live buy would lose its result.
    Safe to run concurrently with buys and with itself: each row leaves
    ``pending`` once.

    :returns: how many attempts it finalised (kept outcomes applied included).
    :raises SQLAlchemyError: the database could not be read or written.
    """
    kept = outcomes.apply_all_kept()
    cutoff = utcnow() - older_than
    ended = _end_pending(cutoff, Outcome(TransactionStatus.FAILED, NO_ORDER_SENT), sent=False)
    if kept.readable:
        ended += _end_pending(cutoff, Outcome(TransactionStatus.UNKNOWN, INTERRUPTED), sent=True)
    else:
        log.warning("kept outcomes unreadable: attempts that sent an order stay pending")
    return kept.applied + ended


def _end_pending(cutoff: datetime, outcome: Outcome, *, sent: bool) -> int:
    session = db.session()
    rows = transactions.finalise_pending_before(
        session, cutoff, outcome.ledger_values(utcnow()), orders_sent=sent
    )
    for row in rows:
        summaries.add_final(session, row)
    ids = [row.id for row in rows]  # read before the commit expires the rows
    session.commit()
    if ids:
        BUYS.labels(outcome.status.value, outcome.reason or "").inc(len(ids))
        with redis_guard("sweep"):
            pipe = redis_store.client.pipeline(transaction=False)
            pipe.incrby(FINALISED_KEY, len(ids))
            pipe.expire(FINALISED_KEY, JOB_RECORD_SECONDS)
            pipe.execute()
        log.warning(
            "abandoned buy attempts finalised",
            extra={"transaction_ids": ids, "status": outcome.status, "reason": outcome.reason},
        )
    return len(ids)


def sweep() -> int:
    """One run of the ``buys sweep`` job: :func:`finalise_abandoned`, then the
    run's time recorded for :func:`sweep_state` (fail open: a Redis failure is
    counted and logged, and the sweep still counts as done).

    :returns: how many attempts it finalised (kept outcomes applied included).
    :raises SQLAlchemyError: the database could not be read or written;
        the run is not recorded.
    """
    finalised = finalise_abandoned()
    with redis_guard("sweep"):
        redis_store.client.set(LAST_SUCCESS_KEY, utcnow().timestamp(), ex=JOB_RECORD_SECONDS)
    return finalised


def sweep_state(app: Flask) -> Iterator[Metric]:
    """``trading_sweep_last_success_timestamp_seconds`` and
    ``trading_abandoned_attempts_finalised_total``, read from Redis at scrape time.

    Always declared; a sample only once a sweep has been recorded (and not
    when Redis cannot be read), so alerts can tell "never ran" (absent) from
    "ran long ago". Not registered here: the app factory registers it.
    """
    last_success = GaugeMetricFamily(
        "trading_sweep_last_success_timestamp_seconds",
        "When the last successful sweep of abandoned buy attempts finished (Unix time).",
    )
    finalised = CounterMetricFamily(
        "trading_abandoned_attempts_finalised",
        "Buy attempts left pending by a crashed worker and finalised by the sweep "
        "(failed when no order was sent, else unknown), by any process.",
    )
    raw_success, raw_finalised = None, None
    with app.app_context(), redis_guard("metrics") as guard:
        raw_success, raw_finalised = redis_store.client.mget([LAST_SUCCESS_KEY, FINALISED_KEY])
    if raw_success is not None:
        last_success.add_metric([], float(raw_success))
    if not guard.failed:
        finalised.add_metric([], float(raw_finalised or 0))
    yield from (last_success, finalised)
