"""``flask --app service.wsgi report send [--date YYYY-MM-DD] [--force]``.

Exit status: 0 when the report was sent, or already sent / being sent by
another run (nothing to do); 1 when delivery failed (the next run retries) or
``--force`` found another run sending; 2 for a bad ``--date``.
"""

from __future__ import annotations

from datetime import datetime

import click

from service.errors import ReportDayNotClosed, ServiceError
from service.jobs import JobGroup
from service.services import reports
from service.services.reports import ReportOutcome

report = JobGroup("report", help="The daily transaction report.")


@report.command("send")
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The UTC day to report, YYYY-MM-DD; it must have ended. Default: yesterday.",
)
@click.option("--force", is_flag=True, help="Send again even if the day's report was sent.")
def send(day: datetime | None, force: bool) -> None:
    """E-mail the report of one closed UTC day, once (DESIGN §6)."""
    try:
        outcome = reports.send_daily_report(day.date() if day else None, force=force)
    except ReportDayNotClosed as exc:
        raise click.BadParameter(exc.message, param_hint="'--date'") from exc
    except ServiceError as exc:
        shown = day.date() if day else "yesterday"
        raise click.ClickException(
            f"report for {shown} not sent: {exc.message}; the next run will retry"
        ) from exc
    if force and outcome.state == "in_progress":
        raise click.ClickException(f"{describe(outcome)}; not sent again, retry later")
    click.echo(describe(outcome))


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
