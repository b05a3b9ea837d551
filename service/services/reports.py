"""The daily transaction report: one closed UTC day, e-mailed once; or a
preview of any day, written to a file, that sends and records nothing.

A run claims the day in ``report_runs`` (one atomic upsert), reads the day in
one snapshot — totals from the incremental ``daily_summaries``, the failed and
unknown attempts, the unknown ones still to reconcile (any day up to this one)
and the day's resolutions, and every ledger row streamed into a CSV file —
writes the
message to a file, delivers it, and records the outcome. A failed delivery
releases the claim, so the next run retries; a crashed run's claim expires
after :data:`REPORT_LEASE`. The tables are :mod:`service.services.report_content`,
the message's text :mod:`service.services.report_views`.
"""

from __future__ import annotations

import gzip
import io
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from secrets import token_hex
from typing import Any, Literal, cast

from flask import Flask
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service import mail
from service.config import current_settings
from service.errors import InvalidInput, MailDeliveryFailed, ReportDayNotClosed, ServiceError
from service.extensions import db
from service.models import TransactionStatus
from service.models.base import utcnow
from service.repositories import reports as runs
from service.repositories import resolutions
from service.services import stocks
from service.services.report_content import (
    DayReport,
    Outstanding,
    Problem,
    ResolvedAttempt,
    summarise,
)
from service.services.report_views import render, subject
from service.services.sweep import finalise_abandoned

log = logging.getLogger(__name__)

# A ``sending`` claim older than this belongs to a run that died; it may be taken over.
REPORT_LEASE = timedelta(minutes=15)
# Failed and unknown attempts listed in the body; the attachment has them all.
PROBLEMS_SHOWN = 300
# Above this many rows (about 7 MB) the CSV is attached gzip-compressed (a
# fifth of the size), to stay within mail size limits.
GZIP_ABOVE_ROWS = 50_000


@dataclass(frozen=True)
class ReportOutcome:
    """What a run did: ``sent`` (over SMTP or into the outbox), or nothing
    because the day is ``already_sent`` or another run is ``in_progress``."""

    day: date
    state: Literal["sent", "already_sent", "in_progress"]
    since: datetime | None = None  # when it was sent, or claimed by the other run
    message_id: str | None = None
    transactions: int = 0
    delivery: mail.Delivery | None = None


def latest_closed_day(now: datetime) -> date:
    """Yesterday in UTC: the most recent day that has ended."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def check_closed(day: date, now: datetime) -> None:
    """:raises ReportDayNotClosed: ``day`` is today or later (UTC)."""
    latest = latest_closed_day(now)
    if day > latest:
        raise ReportDayNotClosed(
            f"{day} has not ended yet (UTC); the latest day that can be reported is {latest}.",
            details={"day": day.isoformat(), "latest": latest.isoformat()},
        )


def send_daily_report(day: date | None = None, *, force: bool = False) -> ReportOutcome:
    """Send the report of ``day`` (default: yesterday, UTC) unless it was sent.

    Does nothing when the day was already sent (unless ``force``) or another
    run is sending it right now. Delivers over SMTP, or without ``SMTP_HOST``
    writes an ``.eml`` file into ``REPORT_OUTBOX_DIR``.

    :raises ReportDayNotClosed: ``day`` has not ended yet;
    :raises MailDeliveryFailed: the message was not delivered; the failure is
        counted and the day stays unsent, so the next run retries.
    """
    now = utcnow()
    day = day or latest_closed_day(now)
    check_closed(day, now)
    session = db.session()
    claimed_at = runs.claim_run(session, day, now=now, lease=REPORT_LEASE, force=force)
    session.commit()
    if claimed_at is None:
        return _not_claimed(day)
    try:
        # Attempts whose worker died mid-buy get their final status (failed or unknown)
        # first, in their own transaction: the day is then read from one snapshot.
        finalise_abandoned()
        report, message_id, delivery = _compose_and_deliver(day, now)
    except Exception as exc:
        session.rollback()
        runs.mark_failed(session, day, claimed_at=claimed_at, error=str(exc))
        session.commit()
        log.error("report not delivered", extra={"day": day.isoformat(), "error": str(exc)})
        raise
    runs.mark_sent(session, day, now=utcnow(), message_id=message_id)
    session.commit()
    log.info(
        "report written to the outbox" if delivery.outbox_path else "report sent",
        extra={
            "day": day.isoformat(),
            "transactions": report.transactions,
            "forced": force,
            "path": str(delivery.outbox_path) if delivery.outbox_path else None,
        },
    )
    return ReportOutcome(
        day,
        "sent",
        message_id=message_id,
        transactions=report.transactions,
        delivery=delivery,
    )


def _compose_and_deliver(day: date, now: datetime) -> tuple[DayReport, str, mail.Delivery]:
    """Read ``day``, write its message (with the CSV) into a temporary
    directory and deliver it; the report, the message id and the delivery.

    :raises MailDeliveryFailed: the message was not delivered.
    """
    settings = current_settings()
    with tempfile.TemporaryDirectory(prefix="report-") as workdir:
        report, attachment = _read_day(day, now, csv_dir=Path(workdir))
        assert attachment is not None
        message = Path(workdir) / f"report-{day}-{now:%Y%m%dT%H%M%SZ}-{token_hex(3)}.eml"
        with message.open("wb") as out:
            message_id = mail.write_message(
                out,
                sender=settings.report_from,
                recipients=settings.report_recipients,
                subject=subject(report),
                text=render(report, attachment.path.name, "txt"),
                html=render(report, attachment.path.name, "html"),
                attachment=attachment,
            )
        delivery = mail.deliver(
            settings, message, sender=settings.report_from, recipients=settings.report_recipients
        )
    return report, message_id, delivery


def preview_report(day: date | None = None, out: Path | None = None) -> Path:
    """Render the report of ``day`` (default: today, UTC) as the e-mail's HTML
    part into ``out`` (default: ``REPORT_OUTBOX_DIR/previews/report-DAY.html``)
    and return the file's path. A day that has not ended is reported so far.

    Sends nothing and writes nothing to the database: no ``report_runs`` row,
    and attempts left pending stay pending (they are shown as such).

    :raises InvalidInput: ``day`` is after today;
    :raises MailDeliveryFailed: the file cannot be written.
    """
    now = utcnow()
    today = now.date()
    day = day or today
    if day > today:
        raise InvalidInput(
            f"{day} has not started yet (UTC); the latest day that can be previewed is {today}.",
            details={"day": day.isoformat(), "latest": today.isoformat()},
        )
    report, _ = _read_day(day, now, csv_dir=None)
    target = out or Path(current_settings().report_outbox_dir) / "previews" / f"report-{day}.html"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(report, None, "html"), encoding="utf-8")
    except OSError as exc:
        raise MailDeliveryFailed(
            f"cannot write the preview to {target}: {exc}", details={"error": type(exc).__name__}
        ) from exc
    return target


def _not_claimed(day: date) -> ReportOutcome:
    session = db.session()
    run = runs.find_run(session, day)
    if run is not None and run.state == runs.SENT:
        outcome = ReportOutcome(day, "already_sent", since=run.sent_at, message_id=run.message_id)
    else:
        outcome = ReportOutcome(day, "in_progress", since=run.claimed_at if run else None)
    session.commit()
    return outcome


def _read_day(
    day: date, now: datetime, *, csv_dir: Path | None
) -> tuple[DayReport, mail.Attachment | None]:
    """The day's figures, and with ``csv_dir`` its CSV file written there, read
    from one database snapshot; stock names are looked up after it ends."""
    session = db.session()
    start, end = day_bounds(day)
    runs.read_consistently(session)
    rows = runs.summary_rows(session, day)
    previous = runs.summary_rows(session, day - timedelta(days=1))
    users = runs.distinct_users(session, start, end)
    pending = runs.pending_count(session, start, end)
    listed = {
        status: [
            Problem.of(row)
            for row in runs.problem_transactions(session, start, end, status, PROBLEMS_SHOWN)
        ]
        for status in runs.PROBLEM_STATUSES
    }
    hours = runs.hourly_counts(session, start, end)
    reconciliation = _reconciliation(session, start, end, now)
    attachment, csv_rows = None, 0
    if csv_dir is not None:
        attachment, csv_rows = _write_csv(
            session, day, csv_dir, expected=sum(row.count for row in rows) + pending
        )
    session.commit()
    report = summarise(
        day,
        rows,
        previous=previous,
        users=users,
        pending=pending,
        failed=listed[TransactionStatus.FAILED],
        unknown=listed[TransactionStatus.UNKNOWN],
        hours=hours,
        names=stock_names({row.symbol for row in rows}),
        so_far=now if end > now else None,
    )
    if csv_dir is not None and csv_rows != report.transactions:
        log.warning(
            "daily summaries disagree with the ledger",
            extra={"day": day.isoformat(), "summaries": report.transactions, "ledger": csv_rows},
        )
    return replace(report, csv_rows=csv_rows, **reconciliation), attachment


def _reconciliation(
    session: Session, start: datetime, end: datetime, now: datetime
) -> dict[str, Any]:
    """The report's reconciliation sections: every unknown attempt created
    before ``end`` that no operator has resolved (the oldest
    :data:`PROBLEMS_SHOWN`, aged at ``now``), and the resolutions made in
    ``[start, end)``; as :class:`DayReport` fields."""
    outstanding = resolutions.unresolved_before(session, end, PROBLEMS_SHOWN)
    return {
        "to_reconcile": [Outstanding(Problem.of(row), now - row.created_at) for row in outstanding],
        "unreconciled": resolutions.count_unresolved_before(session, end),
        "resolved": [
            ResolvedAttempt.of(resolution, row)
            for resolution, row in resolutions.resolved_between(session, start, end)
        ],
    }


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The UTC instants ``[start, end)`` of ``day``."""
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def _write_csv(
    session: Session, day: date, directory: Path, *, expected: int
) -> tuple[mail.Attachment, int]:
    """Write the day's ledger rows into ``directory`` (gzip-compressed above
    :data:`GZIP_ABOVE_ROWS` ``expected`` rows); the attachment and its row count."""
    start, end = day_bounds(day)
    csv_path = directory / f"transactions-{day}.csv"
    if expected > GZIP_ABOVE_ROWS:
        attachment = mail.Attachment(csv_path.with_suffix(".csv.gz"), "application/gzip")
        # GzipFile (3.11) compresses each write, and COPY writes row by row:
        # a buffer in front makes it compress megabyte blocks, much faster.
        with (
            gzip.open(attachment.path, "wb", compresslevel=6) as packed,
            io.BufferedWriter(cast(io.RawIOBase, packed), 1 << 20) as out,
        ):
            return attachment, runs.write_day_csv(session, start, end, out)
    attachment = mail.Attachment(csv_path, "text/csv; charset=utf-8")
    with csv_path.open("wb") as out:
        return attachment, runs.write_day_csv(session, start, end, out)


def stock_names(symbols: Iterable[str]) -> dict[str, str]:
    """The catalogue names of ``symbols``, from the service's cached catalogue
    search. Symbols the catalogue does not list are absent; when the catalogue
    cannot be read (vendor down, nothing cached) the remaining ones are too —
    a report goes out without names rather than not at all."""
    names: dict[str, str] = {}
    for symbol in sorted(symbols):
        try:
            listing = stocks.list_stocks(search=symbol, limit=1)
        except ServiceError as exc:
            log.warning("stock names unavailable for the report", extra={"error": exc.code})
            break
        names.update((item.symbol, item.name) for item in listing.items if item.symbol == symbol)
    return names


def report_metrics(app: Flask) -> Iterable[Metric]:
    """Export what the report job leaves in ``report_runs`` (the Helm chart alerts on these)."""
    with app.app_context():
        try:
            totals = runs.run_totals(db.session())
        except SQLAlchemyError as exc:
            log.warning("report metrics unavailable", extra={"error": type(exc).__name__})
            return
        finally:
            db.session.remove()
    failures = CounterMetricFamily(
        "trading_report_failures", "Daily report attempts that failed to deliver."
    )
    failures.add_metric([], totals.failures)
    # Always declared; a sample only once a report was delivered, so a new
    # install tells "never sent" (absent) from "sent long ago".
    last_sent = GaugeMetricFamily(
        "trading_report_last_success_timestamp_seconds",
        "When the last daily report was delivered (Unix time).",
    )
    if totals.last_sent_at is not None:
        last_sent.add_metric([], totals.last_sent_at.timestamp())
    yield from (failures, last_sent)
