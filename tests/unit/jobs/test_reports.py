"""``flask report send``: what it prints and its exit status."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest
from click.testing import Result
from flask import Flask

from service.app import create_app
from service.config import Settings
from service.extensions import db
from service.models import ReportRun
from service.models.base import utcnow
from tests.conftest import SmtpServer
from tests.ledger import record

DAY = "2026-11-16"


def send(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["report", "send", *args])


def preview(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["report", "preview", *args])


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def outbox_app(make_app: Callable[..., Flask], outbox: Path) -> Flask:
    """No ``SMTP_HOST``: reports are written to the outbox."""
    app = make_app(report_outbox_dir=str(outbox))
    with app.app_context():
        session = db.session()
        for hour in (9, 10, 11):
            record(session, datetime(2026, 11, 16, hour, tzinfo=UTC), user_id=f"u{hour}")
        session.commit()
    return app


def test_without_smtp_the_report_is_written_to_the_outbox(outbox_app: Flask, outbox: Path) -> None:
    result = send(outbox_app, "--date", DAY)

    assert result.exit_code == 0, result.output
    [written] = outbox.glob("*.eml")
    assert result.output == (
        f"report for {DAY}: 3 transactions, written to {written} (SMTP_HOST is not set)\n"
    )
    message = message_from_bytes(written.read_bytes(), policy=default_policy)
    assert message["Subject"].startswith(f"Transaction report {DAY}: 3 transactions")
    [attachment] = list(message.iter_attachments())
    assert len(attachment.get_content().splitlines()) == 4  # header + 3 rows


def test_a_second_run_says_the_day_was_sent_and_does_nothing(
    outbox_app: Flask, outbox: Path
) -> None:
    send(outbox_app, "--date", DAY)

    result = send(outbox_app, "--date", DAY)

    assert result.exit_code == 0
    assert re.fullmatch(
        rf"report for {DAY}: already sent at \S+ \(message id <\S+>\);"
        r" nothing to do \(--force sends it again\)\n",
        result.output,
    )
    assert len(list(outbox.glob("*.eml"))) == 1


def test_force_sends_again(outbox_app: Flask, outbox: Path) -> None:
    send(outbox_app, "--date", DAY)

    result = send(outbox_app, "--date", DAY, "--force")

    assert result.exit_code == 0
    assert "3 transactions, written to" in result.output
    assert len(list(outbox.glob("*.eml"))) == 2


def test_the_default_day_is_yesterday(outbox_app: Flask) -> None:
    result = send(outbox_app)

    yesterday = utcnow().date() - timedelta(days=1)
    assert result.exit_code == 0
    assert result.output.startswith(f"report for {yesterday}: 0 transactions, written to")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-13-01", "'2026-13-01' does not match the format '%Y-%m-%d'"),
        ("23/11/2026", "does not match the format"),
        ("today", "does not match the format"),
        (str(utcnow().date()), "has not ended yet (UTC)"),
        (str(utcnow().date() + timedelta(days=30)), "has not ended yet (UTC)"),
    ],
)
def test_bad_dates_are_usage_errors(
    outbox_app: Flask, outbox: Path, value: str, message: str
) -> None:
    result = send(outbox_app, "--date", value)

    assert result.exit_code == 2
    assert "Invalid value for '--date'" in result.output
    assert message in result.output
    assert not outbox.exists()


def test_smtp_failure_exits_1_and_the_next_run_delivers(
    make_app: Callable[..., Flask], smtp_server: SmtpServer
) -> None:
    app = make_app(
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_starttls=False,
        report_recipients=("a@example.com", "b@example.com"),
    )
    smtp_server.stop()

    failed = send(app, "--date", DAY)

    assert failed.exit_code == 1
    assert failed.output.startswith(
        f"Error: report for {DAY} not sent: SMTP delivery through 127.0.0.1:{smtp_server.port}"
        " failed: [Errno 111] Connection refused"
    )
    assert failed.output.rstrip().endswith("the next run will retry")
    smtp_server.start()
    delivered = send(app, "--date", DAY)
    assert delivered.exit_code == 0
    [message] = smtp_server.messages
    assert delivered.output == (
        f"report for {DAY}: 0 transactions, sent to a@example.com, b@example.com"
        f" (message id {message['Message-ID']})\n"
    )


def test_force_while_another_run_is_sending_is_refused(outbox_app: Flask, outbox: Path) -> None:
    with outbox_app.app_context():
        db.session.add(ReportRun(day=date(2026, 11, 16), state="sending", claimed_at=utcnow()))
        db.session.commit()

    plain = send(outbox_app, "--date", DAY)
    forced = send(outbox_app, "--date", DAY, "--force")

    assert plain.exit_code == 0
    assert plain.output.startswith(f"report for {DAY}: another run has been sending it since")
    assert forced.exit_code == 1
    assert "not sent again, retry later" in forced.output
    assert not outbox.exists()


def test_preview_writes_the_day_to_a_file_and_says_where(outbox_app: Flask, outbox: Path) -> None:
    result = preview(outbox_app, "--date", DAY)

    written = outbox / "previews" / f"report-{DAY}.html"
    assert result.exit_code == 0, result.output
    assert result.output == f"report preview written to {written}\n"
    page = written.read_text()
    assert f"Transaction report &mdash; {DAY}</h1>" in page
    assert "Preview: nothing was sent." in page
    assert not list(outbox.glob("*.eml"))
    # Nothing was recorded: the day is sent as if it had never been previewed.
    assert send(outbox_app, "--date", DAY).output.startswith(f"report for {DAY}: 3 transactions")


def test_preview_of_today_shows_the_day_so_far(outbox_app: Flask, tmp_path: Path) -> None:
    target = tmp_path / "today.html"

    result = preview(outbox_app, "--out", str(target))

    assert result.exit_code == 0, result.output
    assert result.output == f"report preview written to {target}\n"
    assert f"Transaction report &mdash; {utcnow().date()} (so far)</h1>" in target.read_text()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-13-01", "does not match the format"),
        (str(utcnow().date() + timedelta(days=1)), "has not started yet (UTC)"),
    ],
)
def test_preview_refuses_bad_dates(
    outbox_app: Flask, outbox: Path, value: str, message: str
) -> None:
    result = preview(outbox_app, "--date", value)

    assert result.exit_code == 2
    assert message in result.output
    assert not outbox.exists()


def test_preview_to_an_unwritable_place_is_one_line(outbox_app: Flask, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    result = preview(outbox_app, "--date", DAY, "--out", str(blocker / "report.html"))

    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: no preview written: cannot write the preview to {blocker}"
    )
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("send", f"Error: report for {DAY} not sent: the database is unavailable (connection"),
        ("preview", "Error: no preview written: the database is unavailable (connection"),
    ],
)
def test_a_database_outage_is_one_line_not_a_traceback(
    make_settings: Callable[..., Settings], tmp_path: Path, command: str, expected: str
) -> None:
    # Nothing listens on port 1: PostgreSQL refuses at once.
    down = create_app(
        make_settings(
            database_url="postgresql://postgres@127.0.0.1:1/ledger",
            report_outbox_dir=str(tmp_path / "outbox"),
        )
    )

    result = down.test_cli_runner().invoke(args=["report", command, "--date", DAY])

    assert result.exit_code == 1
    assert result.output.startswith(expected)
    assert "refused" in result.output
    assert len(result.output.splitlines()) == 1
    assert not (tmp_path / "outbox").exists()
