"""``flask --app service.wsgi report send|preview``.

``send`` exit status: 0 when the report was delivered, or already sent / being
sent by another run (nothing to do); 1 when delivery failed (the next run
retries), the database is unreachable, or ``--force`` found another run
sending; 2 for a bad ``--date``. ``preview``: 0 with the file written, 1 when
it could not be, 2 for a bad ``--date``. Errors are one line, never a traceback.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from service.errors import InvalidInput, ReportDayNotClosed, ServiceError
from service.jobs import DAY_FORMAT, JobGroup, database_problem
from service.services import reports
from service.services.reports import ReportOutcome

report = JobGroup("report", help="The daily transaction report.")


@report.command("send")
@click.option(
    "--date",
    "day",
    type=DAY_FORMAT,
    help="The UTC day to report, YYYY-MM-DD; it must have ended. Default: yesterday.",
)
@click.option("--force", is_flag=True, help="Send again even if the day's report was sent.")
def send(day: datetime | None, force: bool) -> None:
    """E-mail the report of one closed UTC day, once.

    Without SMTP_HOST the message is written as an .eml file into
    REPORT_OUTBOX_DIR instead.
    """
    shown = day.date() if day else "yesterday"
    try:
        outcome = reports.send_daily_report(day.date() if day else None, force=force)
    except ReportDayNotClosed as exc:
        raise click.BadParameter(exc.message, param_hint="'--date'") from exc
    except (ServiceError, SQLAlchemyError) as exc:
        raise click.ClickException(
            f"report for {shown} not sent: {problem(exc)}; the next run will retry"
        ) from exc
    if force and outcome.state == "in_progress":
        raise click.ClickException(f"{describe(outcome)}; not sent again, retry later")
    click.echo(describe(outcome))


@report.command("preview")
@click.option(
    "--date",
    "day",
    type=DAY_FORMAT,
    help="The UTC day to show, YYYY-MM-DD; today shows the day so far. Default: today.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The HTML file to write. Default: REPORT_OUTBOX_DIR/previews/report-DAY.html.",
)
def preview(day: datetime | None, out: Path | None) -> None:
    """Write the report of any day as the e-mail's HTML, to open in a browser.

    Sends nothing and records nothing: the day can still be sent afterwards.
    """
    try:
        written = reports.preview_report(day.date() if day else None, out)
    except InvalidInput as exc:
        raise click.BadParameter(exc.message, param_hint="'--date'") from exc
    except (ServiceError, SQLAlchemyError) as exc:
        raise click.ClickException(f"no preview written: {problem(exc)}") from exc
    click.echo(f"report preview written to {written.resolve()}")


def problem(exc: ServiceError | SQLAlchemyError) -> str:
    """One line naming what went wrong, for an operator."""
    if isinstance(exc, ServiceError):
        return exc.message
    return database_problem(exc)


def describe(outcome: ReportOutcome) -> str:
    """One line saying what the run did."""
    prefix = f"report for {outcome.day}"
    if outcome.state == "already_sent":
        return (
            f"{prefix}: already sent at {_time(outcome.since)} (message id {outcome.message_id});"
            " nothing to do (--force sends it again)"
        )
    if outcome.state == "in_progress":
        return f"{prefix}: another run has been sending it since {_time(outcome.since)}"
    assert outcome.delivery is not None
    done = f"{prefix}: {outcome.transactions:,} transactions"
    if outcome.delivery.outbox_path is not None:
        return f"{done}, written to {outcome.delivery.outbox_path} (SMTP_HOST is not set)"
    line = (
        f"{done}, sent to {', '.join(outcome.delivery.accepted)} (message id {outcome.message_id})"
    )
    if outcome.delivery.refused:
        line += f"; refused by the server: {', '.join(outcome.delivery.refused)}"
    return line


def _time(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "an unknown time"
