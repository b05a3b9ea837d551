"""Queries of the daily report: the once-per-day claim (``report_runs``), the
day's aggregates (``daily_summaries``) and the day's ledger rows, streamed."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from service.models import (
    DailySummary,
    ReportRun,
    Transaction,
    TransactionResolution,
    TransactionStatus,
)
from service.repositories import upsert

SENDING, SENT, FAILED = "sending", "sent", "failed"
PROBLEM_STATUSES = (TransactionStatus.FAILED.value, TransactionStatus.UNKNOWN.value)

# The attachment's columns, in order (README "Daily report" documents them).
CSV_COLUMNS = (
    "id",
    "created_at",
    "completed_at",
    "user_id",
    "symbol",
    "quantity",
    "requested_price",
    "market_price",
    "executed_price",
    "total",
    "status",
    "reason",
    "vendor_status",
    "vendor_message",
    "attempts",
)
_TIMESTAMPS = ("created_at", "completed_at")
# ISO 8601 in UTC with microseconds, identical from PostgreSQL and from Python.
_PG_TIME_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_PY_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_BATCH_ROWS = 2000


# --- the claim ----------------------------------------------------------------


def claim_run(
    session: Session, day: date, *, now: datetime, lease: timedelta, force: bool
) -> datetime | None:
    """Atomically claim ``day``'s report for this run; the claim time, or ``None``.

    Claimed when the day has no run yet, its last run ``failed``, its
    ``sending`` claim is older than ``lease`` (that run died), or — with
    ``force`` — it was already ``sent``. One ``INSERT … ON CONFLICT DO UPDATE
    … WHERE``, so of two runs racing for the same day exactly one wins.
    """
    takeable = or_(
        ReportRun.state == FAILED,
        and_(ReportRun.state == SENDING, ReportRun.claimed_at < now - lease),
    )
    if force:
        takeable = or_(takeable, ReportRun.state == SENT)
    insert = upsert(session, ReportRun.__table__).values(
        day=day, state=SENDING, attempts=1, failures=0, claimed_at=now
    )
    claimed = session.execute(
        insert.on_conflict_do_update(
            index_elements=["day"],
            set_={
                "state": SENDING,
                "attempts": ReportRun.attempts + 1,
                "claimed_at": now,
                "last_error": None,
            },
            where=takeable,
        ).returning(ReportRun.claimed_at)
    ).scalar_one_or_none()
    return claimed


def find_run(session: Session, day: date) -> ReportRun | None:
    """The run record of ``day``, if any run has claimed it."""
    return session.get(ReportRun, day, populate_existing=True)


def mark_sent(session: Session, day: date, *, now: datetime, message_id: str) -> None:
    """Record that ``day``'s report went out (whoever holds the claim now)."""
    session.execute(
        update(ReportRun)
        .where(ReportRun.day == day)
        .values(state=SENT, sent_at=now, message_id=message_id, last_error=None)
    )


def mark_failed(session: Session, day: date, *, claimed_at: datetime, error: str) -> None:
    """Count a failed attempt of ``day``'s report and release the claim, so the
    next run retries — unless another run has taken the claim over meanwhile."""
    ours = and_(ReportRun.state == SENDING, ReportRun.claimed_at == claimed_at)
    session.execute(
        update(ReportRun)
        .where(ReportRun.day == day)
        .values(
            state=case((ours, FAILED), else_=ReportRun.state),
            failures=ReportRun.failures + 1,
            last_error=error,
        )
    )


@dataclass(frozen=True)
class RunTotals:
    """What the report runs add up to, for the metrics."""

    last_sent_at: datetime | None
    failures: int


def run_totals(session: Session) -> RunTotals:
    """The latest delivery time and the failed attempts of all days."""
    last_sent_at, failures = session.execute(
        select(func.max(ReportRun.sent_at), func.coalesce(func.sum(ReportRun.failures), 0))
    ).one()
    return RunTotals(last_sent_at, int(failures))


# --- the day's figures --------------------------------------------------------


def read_consistently(session: Session) -> None:
    """Make the session's next transaction read one snapshot (PostgreSQL
    ``REPEATABLE READ``), so totals, lists and the CSV agree with each other.
    Call before the transaction's first query."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def summary_rows(session: Session, day: date) -> list[DailySummary]:
    """``day``'s aggregate rows: one per final status, reason and symbol."""
    return list(session.scalars(select(DailySummary).where(DailySummary.day == day)))


def _in_day(start: datetime, end: datetime) -> Any:
    return and_(Transaction.created_at >= start, Transaction.created_at < end)


def distinct_users(session: Session, start: datetime, end: datetime) -> int:
    """How many users made at least one buy attempt in ``[start, end)``."""
    users = select(Transaction.user_id).where(_in_day(start, end)).group_by(Transaction.user_id)
    return int(session.execute(select(func.count()).select_from(users.subquery())).scalar_one())


def pending_count(session: Session, start: datetime, end: datetime) -> int:
    """Attempts of ``[start, end)`` that have no final status yet."""
    return int(
        session.execute(
            select(func.count())
            .select_from(Transaction)
            .where(_in_day(start, end), Transaction.status == TransactionStatus.PENDING.value)
        ).scalar_one()
    )


def problem_transactions(
    session: Session, start: datetime, end: datetime, status: str, limit: int
) -> list[Transaction]:
    """The first ``limit`` attempts of ``[start, end)`` with ``status``, oldest
    first; an ``unknown`` attempt an operator resolved counts under its resolution."""
    counted_as = func.coalesce(TransactionResolution.status, Transaction.status)
    return list(
        session.scalars(
            select(Transaction)
            .outerjoin(TransactionResolution)
            .where(_in_day(start, end), counted_as == status)
            .order_by(Transaction.created_at, Transaction.id)
            .limit(limit)
        )
    )


@dataclass(frozen=True)
class HourCounts:
    """One UTC hour: every attempt, and those that ended failed or unknown."""

    hour: int
    attempts: int
    problems: int


def hourly_counts(session: Session, start: datetime, end: datetime) -> list[HourCounts]:
    """The attempts of ``[start, end)`` per UTC hour (hours without any are absent)."""
    created: Any = Transaction.created_at
    if session.get_bind().dialect.name == "postgresql":
        # EXTRACT on a timestamptz uses the session's time zone; the report's is UTC.
        created = func.timezone("UTC", created)
    hour = func.extract("hour", created)
    problems = func.count().filter(Transaction.status.in_(PROBLEM_STATUSES))
    rows = session.execute(
        select(hour, func.count(), problems).where(_in_day(start, end)).group_by(hour)
    )
    return [HourCounts(int(at), int(attempts), int(bad)) for at, attempts, bad in rows]


def write_day_csv(session: Session, start: datetime, end: datetime, out: io.BufferedIOBase) -> int:
    """Write every ledger row of ``[start, end)`` to ``out`` as UTF-8 CSV with a
    header (:data:`CSV_COLUMNS`), oldest first; the number of rows written.

    PostgreSQL streams with ``COPY … TO STDOUT``; other backends with a
    server-side cursor. Nothing is held in memory beyond one batch.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _copy_day_csv(session, start, end, out)
    return _stream_day_csv(session, start, end, out)


def _copy_day_csv(session: Session, start: datetime, end: datetime, out: io.BufferedIOBase) -> int:
    columns = ", ".join(
        f"to_char({name} AT TIME ZONE 'UTC', '{_PG_TIME_FORMAT}') AS {name}"
        if name in _TIMESTAMPS
        else name
        for name in CSV_COLUMNS
    )
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        query = cursor.mogrify(
            f"SELECT {columns} FROM transactions"
            " WHERE created_at >= %s AND created_at < %s ORDER BY created_at, id",
            (start, end),
        ).decode()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", out)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _stream_day_csv(
    session: Session, start: datetime, end: datetime, out: io.BufferedIOBase
) -> int:
    batch = io.StringIO()
    writer = csv.writer(batch)
    writer.writerow(CSV_COLUMNS)
    rows = session.execute(
        select(*(getattr(Transaction, name) for name in CSV_COLUMNS))
        .where(_in_day(start, end))
        .order_by(Transaction.created_at, Transaction.id)
        .execution_options(yield_per=_BATCH_ROWS)
    )
    written = 0
    for written, row in enumerate(rows, start=1):
        writer.writerow(_csv_value(value) for value in row)
        if written % _BATCH_ROWS == 0:
            out.write(batch.getvalue().encode())
            batch.seek(0)
            batch.truncate()
    out.write(batch.getvalue().encode())
    return written


def _csv_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime(_PY_TIME_FORMAT)
    if isinstance(value, Decimal):
        return f"{value:f}"
    return value
