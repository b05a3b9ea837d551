"""The daily transaction report: one closed UTC day, e-mailed once; or a
preview of any day, written to a file, that sends and records nothing.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from secrets import token_hex
from typing import Literal, cast

from flask import Flask, render_template
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from service import mail
from service.config import current_settings
from service.errors import InvalidInput, MailDeliveryFailed, ReportDayNotClosed, ServiceError
from service.extensions import db
from service.models import DailySummary, Transaction, TransactionStatus
from service.models.base import utcnow
from service.repositories import reports as runs
from service.services import stocks
from service.services.sweep import finalise_abandoned

log = logging.getLogger(__name__)

# A ``sending`` claim older than this belongs to a run that died; it may be taken over.
REPORT_LEASE = timedelta(minutes=15)
# Failed and unknown attempts listed in the body; the attachment has them all.
PROBLEMS_SHOWN = 300
# Above this many rows (about 7 MB) the CSV is attached gzip-compressed (a
# fifth of the size), to stay within mail size limits.
GZIP_ABOVE_ROWS = 50_000
CURRENCY = "USD"  # the vendor's prices, and so every amount, are in US dollars
CENTS = Decimal("0.01")
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
    """One symbol: its catalogue name (``""`` when unknown), succeeded buys
    (trades, shares, value) and the other attempts."""

    symbol: str
    name: str
    trades: int
    quantity: int
    value: Decimal
    unsuccessful: int


@dataclass(frozen=True)
class Problem:
    """A failed or unknown attempt, as listed in the report body.

    ``vendor_answer`` is the vendor's status and text when the vendor answered,
    ``""`` when it was never asked or never answered (the reason says why).
    """

    id: int
    created_at: datetime
    user_id: str
    symbol: str
    quantity: int
    requested_price: Decimal
    status: str
    reason: str
    vendor_answer: str

    @classmethod
    def of(cls, row: Transaction) -> Problem:
        answered = row.vendor_status is not None
        return cls(
            id=row.id,
            created_at=row.created_at,
            user_id=row.user_id,
            symbol=row.symbol,
            quantity=row.quantity,
            requested_price=row.requested_price,
            status=row.status,
            reason=row.reason or "",
            vendor_answer=f"{row.vendor_status} {row.vendor_message or ''}".strip()
            if answered
            else "",
        )


@dataclass(frozen=True)
class Totals:
    """The final attempts of one day by status (from ``daily_summaries``)."""

    statuses: list[StatusTotal]

    @property
    def attempts(self) -> int:
        return sum(total.count for total in self.statuses)

    @property
    def value_bought(self) -> Decimal:
        return self.status(TransactionStatus.SUCCEEDED).amount

    def count(self, status: str) -> int:
        return self.status(status).count

    def status(self, status: str) -> StatusTotal:
        return next(total for total in self.statuses if total.status == status)


@dataclass(frozen=True)
class Change:
    """One figure of the day against the previous day."""

    label: str
    current: int | Decimal
    previous: int | Decimal

    @property
    def delta(self) -> int | Decimal:
        return self.current - self.previous

    @property
    def is_amount(self) -> bool:
        return isinstance(self.current, Decimal)


@dataclass(frozen=True)
class HourBar:
    """One UTC hour of the chart; widths are percentages of the busiest hour."""

    hour: int
    attempts: int
    problems: int
    attempts_width: int
    problems_width: int


@dataclass(frozen=True)
class DayReport:
    """Everything the message says about one day.

    ``so_far`` is set when the day has not ended: the figures stop at that time.
    """

    day: date
    totals: Totals
    previous: Totals
    users: int
    pending: int
    reasons: list[ReasonCount]
    symbols: list[SymbolFigures]
    failed: list[Problem]
    unknown: list[Problem]
    hours: list[HourBar]
    so_far: datetime | None = None
    csv_rows: int = 0  # rows in the attached CSV

    @property
    def transactions(self) -> int:
        return self.totals.attempts + self.pending

    @property
    def previous_day(self) -> date:
        return self.day - timedelta(days=1)

    @property
    def value_bought(self) -> Decimal:
        return self.totals.value_bought

    def count(self, status: str) -> int:
        return self.totals.count(status)

    def not_shown(self, status: str) -> int:
        """How many attempts with ``status`` the body leaves to the CSV."""
        listed = self.failed if status == TransactionStatus.FAILED else self.unknown
        return self.count(status) - len(listed)

    @property
    def changes(self) -> list[Change]:
        """Attempts, each final status and the value bought, against the day before."""
        return [
            Change("attempts", self.totals.attempts, self.previous.attempts),
            *(
                Change(total.status, total.count, self.previous.count(total.status))
                for total in self.totals.statuses
            ),
            Change("value bought", self.value_bought, self.previous.value_bought),
        ]


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
                settings,
                message,
                sender=settings.report_from,
                recipients=settings.report_recipients,
            )
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
    return replace(report, csv_rows=csv_rows), attachment


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


@dataclass
class _Tally:
    count: int = 0
    quantity: int = 0
    amount: Decimal = Decimal(0)

    def add(self, row: DailySummary) -> None:
        self.count += row.count
        self.quantity += row.quantity
        self.amount += row.amount


def totals(rows: Iterable[DailySummary]) -> Totals:
    """One day's aggregate rows by final status (every status present)."""
    statuses = {status: _Tally() for status in REPORTED_STATUSES}
    for row in rows:
        statuses[row.status].add(row)
    return Totals([StatusTotal(s, t.count, t.quantity, t.amount) for s, t in statuses.items()])


def summarise(
    day: date,
    rows: Iterable[DailySummary],
    *,
    previous: Iterable[DailySummary],
    users: int,
    pending: int,
    failed: list[Problem],
    unknown: list[Problem],
    hours: Iterable[runs.HourCounts],
    names: Mapping[str, str],
    so_far: datetime | None = None,
) -> DayReport:
    """Fold the day's and the previous day's aggregate rows into the report's tables."""
    rows = list(rows)
    bought: dict[str, _Tally] = defaultdict(_Tally)
    unsuccessful: dict[str, int] = defaultdict(int)
    reasons: dict[tuple[str, str], int] = defaultdict(int)
    for row in rows:
        if row.status == TransactionStatus.SUCCEEDED:
            bought[row.symbol].add(row)
        else:
            unsuccessful[row.symbol] += row.count
            reasons[row.status, row.reason] += row.count
    symbols = [
        SymbolFigures(
            symbol,
            names.get(symbol, ""),
            tally.count,
            tally.quantity,
            tally.amount,
            unsuccessful[symbol],
        )
        for symbol in bought.keys() | unsuccessful.keys()
        for tally in [bought.get(symbol, _Tally())]
    ]
    return DayReport(
        day=day,
        totals=totals(rows),
        previous=totals(previous),
        users=users,
        pending=pending,
        reasons=sorted(
            (ReasonCount(status, reason, count) for (status, reason), count in reasons.items()),
            key=lambda reason: (-reason.count, reason.status, reason.reason),
        ),
        symbols=sorted(symbols, key=lambda figures: (-figures.value, figures.symbol)),
        failed=failed,
        unknown=unknown,
        hours=hour_bars(hours),
        so_far=so_far,
    )


def hour_bars(counts: Iterable[runs.HourCounts]) -> list[HourBar]:
    """All 24 hours of the day; bar widths in percent of the busiest hour, at
    least 1 for an hour with any attempt so that it stays visible."""
    by_hour = {count.hour: count for count in counts}
    busiest = max((count.attempts for count in by_hour.values()), default=0)

    def width(value: int) -> int:
        return max(1, round(100 * value / busiest)) if value else 0

    return [
        HourBar(hour, count.attempts, count.problems, width(count.attempts), width(count.problems))
        for hour in range(24)
        for count in [by_hour.get(hour, runs.HourCounts(hour, 0, 0))]
    ]


def render(report: DayReport, attachment: str | None, kind: Literal["txt", "html"]) -> str:
    """The message body, plain text or HTML (``service/templates/reports/daily.*``);
    ``attachment`` names the attached CSV file (``None`` in a preview)."""
    return render_template(
        f"reports/daily.{kind}",
        report=report,
        attachment=attachment,
        amount=amount,
        price=price,
        signed=signed,
        currency=CURRENCY,
    )


def subject(report: DayReport) -> str:
    if not report.transactions:
        return f"Transaction report {report.day}: no transactions"
    return (
        f"Transaction report {report.day}: {report.transactions:,} transactions, "
        f"{report.count('failed'):,} failed, {report.count('unknown'):,} unknown"
    )


def amount(value: Decimal) -> str:
    """A sum of money as the report shows it: thousands separators, rounded
    to cents (half up), with the currency: ``1,234.57 USD``."""
    return f"{value.quantize(CENTS, ROUND_HALF_UP):,} {CURRENCY}"


def price(value: Decimal) -> str:
    """A price with thousands separators and at least two decimals, never
    rounded (the ledger keeps up to six)."""
    exponent = value.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{value:,.{places}f}"


def signed(change: Change) -> str:
    """The change's difference with its sign (``+3``, ``-12.50 USD``, ``0``)."""
    delta = change.delta
    text = amount(abs(Decimal(delta))) if change.is_amount else f"{abs(delta):,}"
    return f"{'+' if delta > 0 else '-' if delta < 0 else ''}{text}"


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
