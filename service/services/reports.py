"""The daily transaction report (DESIGN §6): one closed UTC day, e-mailed once.

A run claims the day in ``report_runs`` (one atomic upsert), reads the day in
one snapshot — totals from the incremental ``daily_summaries``, the failed and
unknown attempts, and every ledger row streamed into a CSV file — writes the
message to a file, delivers it, and records the outcome. A failed delivery
releases the claim, so the next run retries; a crashed run's claim expires
after :data:`REPORT_LEASE`.
"""

from __future__ import annotations

import gzip
import io
import logging
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from secrets import token_hex
from typing import Literal, cast

from flask import Flask, render_template
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from service import mail
from service.config import current_settings
from service.errors import ReportDayNotClosed
from service.extensions import db
from service.models import DailySummary, Transaction, TransactionStatus
from service.models.base import utcnow
from service.repositories import reports as runs
from service.services.sweep import finalise_abandoned

log = logging.getLogger(__name__)

# A ``sending`` claim older than this belongs to a run that died; it may be taken over.
REPORT_LEASE = timedelta(minutes=15)
# Failed and unknown attempts listed in the body; the attachment has them all.
PROBLEMS_SHOWN = 300
# Above this many rows (about 7 MB) the CSV is attached gzip-compressed (a
# fifth of the size), to stay within mail size limits.
GZIP_ABOVE_ROWS = 50_000
REPORTED_STATUSES = tuple(status.value for status in TransactionStatus if status.is_final)


@dataclass(frozen=True)
class StatusTotal:
    """One final status: attempts, shares, and amount (paid when succeeded,
    price × quantity asked otherwise)."""

    status: str
    count: int
    quantity: int
    amount: Decimal


@dataclass(frozen=True)
class ReasonCount:
    status: str
    reason: str
    count: int


@dataclass(frozen=True)
class SymbolFigures:
    """One symbol: succeeded buys (trades, shares, value) and the other attempts."""

    symbol: str
    trades: int
    quantity: int
    value: Decimal
    unsuccessful: int


@dataclass(frozen=True)
class Problem:
    """A failed or unknown attempt, as listed in the report body."""

    id: int
    created_at: datetime
    user_id: str
    symbol: str
    quantity: int
    requested_price: Decimal
    status: str
    reason: str
    vendor_status: int | None
    vendor_message: str

    @classmethod
    def of(cls, row: Transaction) -> Problem:
        return cls(
            id=row.id,
            created_at=row.created_at,
            user_id=row.user_id,
            symbol=row.symbol,
            quantity=row.quantity,
            requested_price=row.requested_price,
            status=row.status,
            reason=row.reason or "",
            vendor_status=row.vendor_status,
            vendor_message=row.vendor_message or "",
        )


@dataclass(frozen=True)
class DayReport:
    """Everything the message says about one day."""

    day: date
    statuses: list[StatusTotal]
    users: int
    pending: int
    reasons: list[ReasonCount]
    symbols: list[SymbolFigures]
    problems: list[Problem]
    problems_total: int
    csv_rows: int = 0  # rows in the attached CSV

    @property
    def transactions(self) -> int:
        return sum(total.count for total in self.statuses) + self.pending

    @property
    def value_bought(self) -> Decimal:
        return self._total(TransactionStatus.SUCCEEDED).amount

    @property
    def problems_not_shown(self) -> int:
        return self.problems_total - len(self.problems)

    def count(self, status: str) -> int:
        return self._total(status).count

    def _total(self, status: str) -> StatusTotal:
        return next(total for total in self.statuses if total.status == status)


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
    settings = current_settings()
    try:
        # Attempts whose worker died mid-buy get their final status (unknown)
        # first, in their own transaction: the day is then read from one snapshot.
        finalise_abandoned()
        with tempfile.TemporaryDirectory(prefix="report-") as workdir:
            report, attachment = _read_day(day, Path(workdir))
            message = Path(workdir) / f"report-{day}-{now:%Y%m%dT%H%M%SZ}-{token_hex(3)}.eml"
            with message.open("wb") as out:
                message_id = mail.write_message(
                    out,
                    sender=settings.report_from,
                    recipients=settings.report_recipients,
                    subject=subject(report),
                    text=render(report, attachment, "txt"),
                    html=render(report, attachment, "html"),
                    attachment=attachment,
                )
            delivery = mail.deliver(
                settings,
                message,
                sender=settings.report_from,
                recipients=settings.report_recipients,
            )
    except Exception as exc:
        session.rollback()
        runs.mark_failed(session, day, claimed_at=claimed_at, error=str(exc))
        session.commit()
        log.error("report not sent", extra={"day": day.isoformat(), "error": str(exc)})
        raise
    runs.mark_sent(session, day, now=utcnow(), message_id=message_id)
    session.commit()
    log.info(
        "report sent",
        extra={"day": day.isoformat(), "transactions": report.transactions, "forced": force},
    )
    return ReportOutcome(
        day,
        "sent",
        message_id=message_id,
        transactions=report.transactions,
        delivery=delivery,
    )


def _not_claimed(day: date) -> ReportOutcome:
    session = db.session()
    run = runs.find_run(session, day)
    if run is not None and run.state == runs.SENT:
        outcome = ReportOutcome(day, "already_sent", since=run.sent_at, message_id=run.message_id)
    else:
        outcome = ReportOutcome(day, "in_progress", since=run.claimed_at if run else None)
    session.commit()
    return outcome


def _read_day(day: date, workdir: Path) -> tuple[DayReport, mail.Attachment]:
    """The day's figures and its CSV file, read from one database snapshot."""
    session = db.session()
    start = datetime.combine(day, time.min, tzinfo=UTC)
    end = start + timedelta(days=1)
    runs.read_consistently(session)
    report = summarise(
        day,
        runs.summary_rows(session, day),
        users=runs.distinct_users(session, start, end),
        pending=runs.pending_count(session, start, end),
        problems=[
            Problem.of(row)
            for row in runs.problem_transactions(session, start, end, PROBLEMS_SHOWN)
        ],
    )
    csv_path = workdir / f"transactions-{day}.csv"
    if report.transactions > GZIP_ABOVE_ROWS:
        attachment = mail.Attachment(csv_path.with_suffix(".csv.gz"), "application/gzip")
        # GzipFile (3.11) compresses each write, and COPY writes row by row:
        # a buffer in front makes it compress megabyte blocks, much faster.
        with (
            gzip.open(attachment.path, "wb", compresslevel=6) as packed,
            io.BufferedWriter(cast(io.RawIOBase, packed), 1 << 20) as out,
        ):
            csv_rows = runs.write_day_csv(session, start, end, out)
    else:
        attachment = mail.Attachment(csv_path, "text/csv; charset=utf-8")
        with csv_path.open("wb") as out:
            csv_rows = runs.write_day_csv(session, start, end, out)
    session.commit()
    if csv_rows != report.transactions:
        log.warning(
            "daily summaries disagree with the ledger",
            extra={"day": day.isoformat(), "summaries": report.transactions, "ledger": csv_rows},
        )
    return replace(report, csv_rows=csv_rows), attachment


@dataclass
class _Tally:
    count: int = 0
    quantity: int = 0
    amount: Decimal = Decimal(0)

    def add(self, row: DailySummary) -> None:
        self.count += row.count
        self.quantity += row.quantity
        self.amount += row.amount


def summarise(
    day: date,
    rows: Iterable[DailySummary],
    *,
    users: int,
    pending: int,
    problems: list[Problem],
) -> DayReport:
    """Fold the day's aggregate rows into the report's tables."""
    statuses = {status: _Tally() for status in REPORTED_STATUSES}
    bought: dict[str, _Tally] = defaultdict(_Tally)
    unsuccessful: dict[str, int] = defaultdict(int)
    reasons: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        statuses[row.status].add(row)
        if row.status == TransactionStatus.SUCCEEDED:
            bought[row.symbol].add(row)
        else:
            unsuccessful[row.symbol] += row.count
            reasons[row.status, row.reason] += row.count
    symbols = [
        SymbolFigures(symbol, tally.count, tally.quantity, tally.amount, unsuccessful[symbol])
        for symbol in bought.keys() | unsuccessful.keys()
        for tally in [bought.get(symbol, _Tally())]
    ]
    return DayReport(
        day=day,
        statuses=[StatusTotal(s, t.count, t.quantity, t.amount) for s, t in statuses.items()],
        users=users,
        pending=pending,
        reasons=sorted(
            (ReasonCount(status, reason, count) for (status, reason), count in reasons.items()),
            key=lambda reason: (-reason.count, reason.status, reason.reason),
        ),
        symbols=sorted(symbols, key=lambda figures: (-figures.value, figures.symbol)),
        problems=problems,
        problems_total=sum(statuses[status].count for status in runs.PROBLEM_STATUSES),
    )


def render(report: DayReport, attachment: mail.Attachment, kind: Literal["txt", "html"]) -> str:
    """The message body, plain text or HTML (``service/templates/reports/daily.*``)."""
    return render_template(
        f"reports/daily.{kind}", report=report, attachment=attachment.path.name, money=money
    )


def subject(report: DayReport) -> str:
    if not report.transactions:
        return f"Transaction report {report.day}: no transactions"
    return (
        f"Transaction report {report.day}: {report.transactions:,} transactions, "
        f"{report.count('failed'):,} failed, {report.count('unknown'):,} unknown"
    )


def money(value: Decimal) -> str:
    """An amount with thousands separators and at least two decimals, never rounded."""
    exponent = value.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{value:,.{places}f}"


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
