"""The daily report: what the e-mail says, and that a day goes out exactly once.

Mail goes to a real SMTP server in the test process (aiosmtpd); the ledger is
written as the buy flow writes it (row + ``daily_summaries`` in one transaction).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_migrate import upgrade
from prometheus_client.parser import text_string_to_metric_families
from selenium import webdriver
from selenium.webdriver.common.by import By

from service.app import create_app
from service.config import Settings
from service.errors import MailDeliveryFailed, ReportDayNotClosed
from service.extensions import db
from service.models import ReportRun, ResolutionStatus, TransactionResolution
from service.models.base import utcnow
from service.repositories import reports as runs
from service.services import report_content, report_views, reports, resolutions
from service.vendorapi.simulator import Simulator
from tests.conftest import SmtpServer
from tests.ledger import record

DAY = date(2026, 11, 23)
RECIPIENTS = ("ops@example.com", "audit@example.com")


def at(hour: int, minute: int = 0, second: int = 0, micro: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], smtp_server: SmtpServer) -> Flask:
    return make_app(
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        smtp_starttls=False,
        report_from="reports@example.com",
        report_recipients=RECIPIENTS,
    )


@pytest.fixture
def app(mail_app: Flask) -> Any:
    with mail_app.app_context():
        yield mail_app


def seed_day() -> None:
    """A day with every status, two boundary rows inside and two outside."""
    session = db.session()
    record(session, at(0), price="220.67", quantity=3, user_id="u1")  # first instant of the day
    record(session, at(12), price="0.25", quantity=10, user_id="u2", symbol="MSFT")
    record(session, at(13), "failed", reason="vendor_rejected", vendor_status=400,
           vendor_message="Price moved <fast>", user_id="u1")  # fmt: skip
    record(session, at(14), "unknown", reason="vendor_timeout", user_id="u3", symbol="TSLA")
    record(session, at(15), "rejected", reason="price_out_of_tolerance", price="999.5",
           quantity=2, user_id="u2", symbol="MSFT")  # fmt: skip
    record(session, at(16), "pending", user_id="u4")  # its worker died mid-buy
    record(session, at(23, 59, 59, 999_999), "failed", reason="retries_exhausted",
           vendor_status=503, user_id="u3")  # fmt: skip
    record(session, at(23, 59, 59, 999_999, day=DAY - timedelta(days=1)), user_id="before")
    record(session, at(0, day=DAY + timedelta(days=1)), "failed", reason="x", user_id="after")
    session.commit()


def ledger(sql: str) -> list[Any]:
    """Rows of ``sql`` over the report day's ledger (``:start``, ``:end`` bound)."""
    start = at(0)
    return list(db.session.execute(sa.text(sql), {"start": start, "end": start + timedelta(1)}))


def parts(message: EmailMessage) -> tuple[str, str, str, bytes]:
    """Text body, HTML body, attachment file name and attachment bytes."""
    assert message.get_content_type() == "multipart/mixed"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    [attachment] = list(message.iter_attachments())
    content = attachment.get_content()
    return (
        text.get_content().replace("\r\n", "\n"),
        html.get_content(),
        attachment.get_filename() or "",
        content if isinstance(content, bytes) else content.encode(),
    )


def csv_rows(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_report_totals_match_the_ledger(app: Flask, smtp_server: SmtpServer) -> None:
    seed_day()

    outcome = reports.send_daily_report(DAY)

    assert outcome.state == "sent"
    assert outcome.transactions == 7
    [message] = smtp_server.messages
    assert message["From"] == "reports@example.com"
    assert set(smtp_server.received[0].rcpt_tos) == set(RECIPIENTS)
    assert message["Message-ID"] == outcome.message_id
    assert (
        message["Subject"] == "Transaction report 2026-11-23: 7 transactions, 2 failed, 2 unknown"
    )
    text, html, _, _ = parts(message)
    shown = {
        match["status"]: (match["count"], match["quantity"], match["amount"])
        for match in re.finditer(
            r"^(?P<status>succeeded|rejected|failed|unknown) +(?P<count>[\d,]+) +"
            r"(?P<quantity>[\d,]+) +(?P<amount>[\d,.]+ USD)$",
            text,
            re.MULTILINE,
        )
    }
    expected = {
        status: (f"{count:,}", f"{quantity:,}", report_views.amount(amount))
        for status, count, quantity, amount in ledger(
            "SELECT status, count(*), sum(quantity),"
            " sum(CASE WHEN status = 'succeeded' THEN total ELSE requested_price * quantity END)"
            " FROM transactions WHERE created_at >= :start AND created_at < :end"
            " AND status <> 'pending' GROUP BY status"
        )
    }
    assert shown == expected
    assert expected["succeeded"] == ("2", "13", "664.51 USD")
    assert "7 transactions by 4 users; value bought 664.51 USD;" in text
    # The attempt abandoned by a dead worker was finalised before the report.
    assert "Still pending" not in text
    assert re.search(r"^unknown +2 ", text, re.MULTILINE)
    assert "interrupted" in text
    for body in (text, html):
        assert "price_out_of_tolerance" in body
        assert "retries_exhausted" in body
    # Names come from the vendor's catalogue; MSFT is not in the simulator's.
    assert re.search(r"^AAPL +Apple Inc\. +1 +3 +662\.01 USD +3$", text, re.MULTILINE)
    assert re.search(r"^MSFT +— +1 +10 +2\.50 USD +1$", text, re.MULTILINE)
    assert "Price moved &lt;fast&gt;" in html  # vendor text is escaped, not markup


def test_report_lists_every_failed_and_unknown_transaction(
    app: Flask, smtp_server: SmtpServer
) -> None:
    seed_day()

    reports.send_daily_report(DAY)

    text, html, _, _ = parts(smtp_server.messages[0])
    problems = ledger(
        "SELECT id FROM transactions WHERE created_at >= :start AND created_at < :end"
        " AND status IN ('failed', 'unknown')"
    )
    assert len(problems) == 4  # the abandoned attempt counts as unknown
    for (problem_id,) in problems:
        assert re.search(rf"^{problem_id} ", text, re.MULTILINE)
        assert f">{problem_id}</td>" in html
    assert "Failed attempts: 2" in text
    assert re.search(r"^Unknown outcomes \(.*\): 2$", text, re.MULTILINE)


def test_csv_attachment_has_every_transaction_of_the_day(
    app: Flask, smtp_server: SmtpServer
) -> None:
    seed_day()

    reports.send_daily_report(DAY)

    _, _, filename, data = parts(smtp_server.messages[0])
    assert filename == "transactions-2026-11-23.csv"
    rows = csv_rows(data)
    day_ids = {
        str(row_id)
        for (row_id,) in ledger(
            "SELECT id FROM transactions WHERE created_at >= :start AND created_at < :end"
        )
    }
    assert {row["id"] for row in rows} == day_ids
    assert len(rows) == 7
    first = rows[0]
    assert first["created_at"] == "2026-11-23T00:00:00.000000Z"
    assert (first["status"], first["quantity"], first["requested_price"], first["total"]) == (
        "succeeded",
        "3",
        "220.670000",
        "662.010000",
    )
    assert rows[-1]["created_at"] == "2026-11-23T23:59:59.999999Z"
    assert {row["status"] for row in rows} == {
        "succeeded",
        "failed",
        "unknown",
        "rejected",
    }


def test_body_shows_the_first_problems_and_counts_the_rest(
    app: Flask, smtp_server: SmtpServer
) -> None:
    session = db.session()
    for n in range(reports.PROBLEMS_SHOWN + 5):
        record(session, at(10, 0, 0, n), "failed", reason="vendor_rejected", user_id=f"u{n}")
    session.commit()

    reports.send_daily_report(DAY)

    text, html, _, data = parts(smtp_server.messages[0])
    assert "... and 5 more: see the attached CSV." in text
    assert "and 5 more" in html
    assert len(re.findall(r">u\d+</td>", html)) == reports.PROBLEMS_SHOWN
    assert len(csv_rows(data)) == reports.PROBLEMS_SHOWN + 5


def test_a_day_without_transactions_gets_a_short_report(
    app: Flask, smtp_server: SmtpServer
) -> None:
    outcome = reports.send_daily_report(DAY)

    assert outcome.state == "sent"
    [message] = smtp_server.messages
    assert message["Subject"] == "Transaction report 2026-11-23: no transactions"
    text, html, _, data = parts(message)
    assert "No transactions on 2026-11-23" in text
    assert "No transactions on 2026-11-23" in html
    assert len(text.splitlines()) < 20
    assert "By hour" not in text
    assert re.search(r"^attempts +0 +0 +0$", text, re.MULTILINE)  # against the day before
    assert csv_rows(data) == []


def test_a_big_csv_is_attached_gzip_compressed(
    app: Flask, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_day()
    monkeypatch.setattr(reports, "GZIP_ABOVE_ROWS", 6)

    reports.send_daily_report(DAY)

    [attachment] = list(smtp_server.messages[0].iter_attachments())
    assert attachment.get_filename() == "transactions-2026-11-23.csv.gz"
    assert attachment.get_content_type() == "application/gzip"
    assert len(csv_rows(gzip.decompress(attachment.get_content()))) == 7


def test_a_sent_day_is_not_sent_again(app: Flask, smtp_server: SmtpServer) -> None:
    first = reports.send_daily_report(DAY)

    again = reports.send_daily_report(DAY)

    assert again.state == "already_sent"
    assert again.message_id == first.message_id
    assert len(smtp_server.received) == 1


def test_force_sends_a_sent_day_again(app: Flask, smtp_server: SmtpServer) -> None:
    reports.send_daily_report(DAY)

    forced = reports.send_daily_report(DAY, force=True)

    assert forced.state == "sent"
    assert len(smtp_server.received) == 2
    run = db.session.get(ReportRun, DAY)
    assert run is not None
    assert (run.state, run.attempts, run.message_id) == ("sent", 2, forced.message_id)


def test_two_runs_at_the_same_time_send_one_email(mail_app: Flask, smtp_server: SmtpServer) -> None:
    with mail_app.app_context():
        seed_day()

    def run() -> str:
        with mail_app.app_context():
            return reports.send_daily_report(DAY).state

    with ThreadPoolExecutor(max_workers=4) as pool:
        states = [future.result() for future in [pool.submit(run) for _ in range(4)]]

    assert len(smtp_server.received) == 1
    assert states.count("sent") == 1
    assert set(states) <= {"sent", "in_progress", "already_sent"}


def test_a_fresh_claim_of_another_run_is_respected(app: Flask, smtp_server: SmtpServer) -> None:
    db.session.add(ReportRun(day=DAY, state="sending", claimed_at=utcnow() - timedelta(minutes=1)))
    db.session.commit()

    outcome = reports.send_daily_report(DAY)

    assert outcome.state == "in_progress"
    assert smtp_server.received == []


def test_the_claim_of_a_run_that_died_is_taken_over(app: Flask, smtp_server: SmtpServer) -> None:
    stale = utcnow() - reports.REPORT_LEASE - timedelta(minutes=1)
    db.session.add(ReportRun(day=DAY, state="sending", attempts=1, claimed_at=stale))
    db.session.commit()

    outcome = reports.send_daily_report(DAY)

    assert outcome.state == "sent"
    assert len(smtp_server.received) == 1


def test_smtp_outage_leaves_the_day_unsent_and_the_next_run_delivers(
    app: Flask, smtp_server: SmtpServer
) -> None:
    seed_day()
    smtp_server.stop()

    with pytest.raises(MailDeliveryFailed, match="Connection refused"):
        reports.send_daily_report(DAY)

    run = db.session.get(ReportRun, DAY)
    assert run is not None
    assert (run.state, run.failures, run.sent_at) == ("failed", 1, None)
    assert run.last_error is not None
    assert "Connection refused" in run.last_error
    smtp_server.start()
    outcome = reports.send_daily_report(DAY)
    assert outcome.state == "sent"
    assert len(smtp_server.received) == 1
    db.session.refresh(run)
    assert (run.state, run.failures, run.attempts) == ("sent", 1, 2)


def test_a_refused_message_is_a_failure_that_is_retried(
    app: Flask, smtp_server: SmtpServer
) -> None:
    smtp_server.refuse = "451 4.3.0 try again later"

    with pytest.raises(MailDeliveryFailed, match="try again later"):
        reports.send_daily_report(DAY)

    smtp_server.refuse = None
    assert reports.send_daily_report(DAY).state == "sent"
    assert len(smtp_server.received) == 1


def test_unknown_recipients_are_named_and_the_others_get_the_report(
    app: Flask, smtp_server: SmtpServer
) -> None:
    smtp_server.unknown_recipients = {"audit@example.com"}

    outcome = reports.send_daily_report(DAY)

    assert outcome.delivery is not None
    assert outcome.delivery.accepted == ("ops@example.com",)
    assert outcome.delivery.refused == ("audit@example.com",)
    assert smtp_server.received[0].rcpt_tos == ["ops@example.com"]


def test_starttls_is_required_when_configured(
    make_app: Callable[..., Flask], smtp_server: SmtpServer
) -> None:
    insecure = make_app(smtp_host="127.0.0.1", smtp_port=smtp_server.port, smtp_starttls=True)
    with insecure.app_context(), pytest.raises(MailDeliveryFailed, match="STARTTLS"):
        reports.send_daily_report(DAY)
    assert smtp_server.received == []


@pytest.mark.parametrize(("password", "delivered"), [("secret", True), ("wrong", False)])
def test_smtp_login(make_app: Callable[..., Flask], password: str, delivered: bool) -> None:
    server = SmtpServer(credentials=("reporter", "secret"))
    server.start()
    try:
        mail_app = make_app(
            smtp_host="127.0.0.1",
            smtp_port=server.port,
            smtp_starttls=False,
            smtp_username="reporter",
            smtp_password=password,
        )
        with mail_app.app_context():
            if delivered:
                reports.send_daily_report(DAY)
            else:
                with pytest.raises(MailDeliveryFailed, match="535"):
                    reports.send_daily_report(DAY)
    finally:
        server.stop()
    assert len(server.received) == int(delivered)


@pytest.mark.parametrize("days_ahead", [0, 1])
def test_a_day_that_has_not_ended_is_refused(app: Flask, days_ahead: int) -> None:
    today = utcnow().date()
    with pytest.raises(ReportDayNotClosed, match="has not ended"):
        reports.send_daily_report(today + timedelta(days=days_ahead))
    assert db.session.get(ReportRun, today) is None


def test_default_day_is_yesterday(app: Flask, smtp_server: SmtpServer) -> None:
    outcome = reports.send_daily_report()

    assert outcome.day == utcnow().date() - timedelta(days=1)
    assert str(outcome.day) in smtp_server.messages[0]["Subject"]


def test_the_web_pods_export_report_metrics(app: Flask, smtp_server: SmtpServer) -> None:
    def scrape() -> dict[str, float]:
        body = app.test_client().get("/metrics").get_data(as_text=True)
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name.startswith("trading_report_")
        }

    assert scrape() == {"trading_report_failures_total": 0.0}
    smtp_server.stop()
    with pytest.raises(MailDeliveryFailed):
        reports.send_daily_report(DAY)
    smtp_server.start()
    reports.send_daily_report(DAY)

    run = db.session.get(ReportRun, DAY)
    assert run is not None
    assert run.sent_at is not None
    assert scrape() == {
        "trading_report_failures_total": 1.0,
        "trading_report_last_success_timestamp_seconds": run.sent_at.timestamp(),
    }


def test_the_embedded_sqlite_database_writes_the_report_to_the_outbox(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    sqlite_app = create_app(
        make_settings(
            database_url=f"sqlite:///{tmp_path / 'trading.db'}", report_outbox_dir=str(outbox)
        )
    )
    with sqlite_app.app_context():
        upgrade()
        seed_day()

        outcome = reports.send_daily_report(DAY)
        again = reports.send_daily_report(DAY)
        for engine in db.engines.values():
            engine.dispose()

    assert outcome.delivery is not None
    assert outcome.delivery.outbox_path is not None
    assert again.state == "already_sent"
    [written] = outbox.glob("*.eml")
    assert written == outcome.delivery.outbox_path
    with written.open("rb") as eml:
        message = message_from_bytes(eml.read(), policy=default_policy)
    text, _, _, data = parts(message)
    assert "7 transactions by 4 users; value bought 664.51 USD;" in text
    rows = csv_rows(data)
    assert len(rows) == 7
    assert (rows[0]["created_at"], rows[0]["total"]) == (
        "2026-11-23T00:00:00.000000Z",
        "662.010000",
    )


def test_prices_are_shown_exactly() -> None:
    assert report_views.price(Decimal("1234567.5")) == "1,234,567.50"
    assert report_views.price(Decimal("0.123456")) == "0.123456"
    assert report_views.price(Decimal("100.000000")) == "100.00"
    assert report_views.price(Decimal("0E-6")) == "0.00"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("1234567.5", "1,234,567.50 USD"),
        ("0.123456", "0.12 USD"),
        ("0.125", "0.13 USD"),  # half a cent rounds up
        ("2.504999", "2.50 USD"),
        ("100.000000", "100.00 USD"),
        ("0E-6", "0.00 USD"),
    ],
)
def test_amounts_have_two_decimals_and_the_currency(value: str, shown: str) -> None:
    assert report_views.amount(Decimal(value)) == shown


def test_failures_and_unknown_outcomes_are_listed_apart(
    app: Flask, smtp_server: SmtpServer
) -> None:
    session = db.session()
    refused = record(session, at(9), "failed", reason="vendor_rejected", vendor_status=400,
                     vendor_message="Price moved")  # fmt: skip
    # The circuit was open: the service refused without asking the vendor.
    not_asked = record(session, at(10), "failed", reason="circuit_open",
                       vendor_message="The vendor is failing; retry later.")  # fmt: skip
    lost = record(session, at(11), "unknown", reason="vendor_timeout",
                  vendor_message="The vendor did not answer in time.")  # fmt: skip
    session.commit()

    reports.send_daily_report(DAY)

    text, html, _, _ = parts(smtp_server.messages[0])
    failed_part, unknown_part = text.split("Failed attempts: 2")[1].split("Unknown outcomes")
    assert re.search(rf"^{refused.id} .* vendor_rejected +400 Price moved$", failed_part, re.M)
    assert re.search(rf"^{not_asked.id} .* circuit_open +—$", failed_part, re.M)
    assert re.search(rf"^{lost.id} .* vendor_timeout +—$", unknown_part, re.M)
    assert str(lost.id) not in failed_part
    assert "retry later" not in text + html  # the service's own text is not a vendor answer
    assert "Failed attempts (2)</h2>" in html
    assert "Unknown outcomes (1)</h2>" in html


def test_the_change_against_the_previous_day(app: Flask, smtp_server: SmtpServer) -> None:
    session = db.session()
    before = DAY - timedelta(days=1)
    for hour in (1, 2, 3):
        record(session, at(hour, day=before), price="10.005", quantity=2)
    record(session, at(4, day=before), "failed", reason="vendor_rejected")
    record(session, at(5), price="1.25")
    record(session, at(6), "unknown", reason="vendor_timeout")
    session.commit()

    report = reports.send_daily_report(DAY)

    assert report.state == "sent"
    text, html, _, _ = parts(smtp_server.messages[0])
    assert "Change against 2026-11-22" in text
    rows = {
        match[1]: match[2].split()
        for match in re.finditer(r"^(attempts|succeeded|failed|unknown|value bought) +(.+)$",
                                 text.split("Change against")[1], re.M)
    }  # fmt: skip
    assert rows["attempts"] == ["2", "4", "-2"]
    assert rows["succeeded"] == ["1", "3", "-2"]
    assert rows["failed"] == ["0", "1", "-1"]
    assert rows["unknown"] == ["1", "0", "+1"]
    # 3 × 2 × 10.005 = 60.03; the amounts are rounded to cents only when shown.
    assert rows["value bought"] == ["1.25", "USD", "60.03", "USD", "-58.78", "USD"]
    assert "-58.78 USD</td>" in html


def test_hours_are_counted_in_utc_with_the_problems_apart(app: Flask) -> None:
    session = db.session()
    record(session, at(0))
    record(session, at(9, 59, 59, 999_999), "failed", reason="vendor_rejected")
    for minute in (0, 30):
        record(session, at(10, minute))
    record(session, at(10, 45), "unknown", reason="vendor_timeout")
    record(session, at(23, 59, 59, 999_999), "rejected", reason="price_out_of_tolerance")
    record(session, at(0, day=DAY + timedelta(days=1)))
    session.commit()
    start, end = reports.day_bounds(DAY)

    counts = runs.hourly_counts(session, start, end)

    assert sorted(counts, key=lambda count: count.hour) == [
        runs.HourCounts(0, 1, 0),
        runs.HourCounts(9, 1, 1),
        runs.HourCounts(10, 3, 1),
        runs.HourCounts(23, 1, 0),  # rejected is the market's answer, not a failure
    ]


def test_hour_bars_are_in_proportion_to_the_busiest_hour() -> None:
    bars = report_content.hour_bars(
        [runs.HourCounts(3, 200, 50), runs.HourCounts(4, 1, 1), runs.HourCounts(7, 100, 0)]
    )

    assert [bar.hour for bar in bars] == list(range(24))
    by_hour = {bar.hour: bar for bar in bars}
    assert (by_hour[3].attempts_width, by_hour[3].problems_width) == (100, 25)
    assert (by_hour[7].attempts_width, by_hour[7].problems_width) == (50, 0)
    assert (by_hour[4].attempts_width, by_hour[4].problems_width) == (1, 1)  # small, still seen
    assert (by_hour[0].attempts, by_hour[0].attempts_width) == (0, 0)


def test_preview_records_nothing(app: Flask, smtp_server: SmtpServer, tmp_path: Path) -> None:
    seed_day()
    target = tmp_path / "preview.html"

    written = reports.preview_report(DAY, target)

    assert written == target
    page = target.read_text()
    assert "Transaction report &mdash; 2026-11-23</h1>" in page
    assert "Still pending when the report was made: 1" in page  # not finalised by a preview
    assert "Apple Inc." in page
    assert smtp_server.messages == []
    assert db.session.scalars(sa.select(ReportRun)).all() == []
    assert ledger("SELECT count(*) FROM transactions WHERE status = 'pending'") == [(1,)]


def test_a_day_in_progress_is_reported_so_far(app: Flask, tmp_path: Path) -> None:
    session = db.session()
    record(session, utcnow(), price="3.5")
    session.commit()

    page = reports.preview_report(None, tmp_path / "today.html").read_text()

    assert f"{utcnow().date()} (so far)</h1>" in page
    assert "the day has not ended" in page
    assert "3.50 USD" in page


def test_a_report_without_stock_names_when_the_catalogue_is_out_of_reach(
    app: Flask, smtp_server: SmtpServer, simulator: Simulator
) -> None:
    seed_day()
    simulator.configure(error_rate=1.0)

    reports.send_daily_report(DAY)

    text, _, _, _ = parts(smtp_server.messages[0])
    assert re.search(r"^AAPL +— +1 +3 +662\.01 USD +3$", text, re.MULTILINE)


def test_the_html_part_reads_right_in_a_browser(
    app: Flask, smtp_server: SmtpServer, browser: webdriver.Chrome, tmp_path: Path
) -> None:
    session = db.session()
    for minute in range(3):
        record(session, at(10, minute), price="0.125", quantity=4)
    record(session, at(10, 30), "failed", reason="vendor_rejected", vendor_status=400,
           vendor_message="Price moved")  # fmt: skip
    record(session, at(12, 5), price="1000", quantity=2)
    record(session, at(12, 6), price="1000")
    record(session, at(23, 59), "unknown", reason="vendor_timeout")
    session.commit()
    reports.send_daily_report(DAY)
    _, html, _, _ = parts(smtp_server.messages[0])
    page = tmp_path / "report.html"
    page.write_text(html)

    browser.get(page.as_uri())

    # Nothing a mail client would strip or block.
    assert browser.find_elements(By.CSS_SELECTOR, "script, img, link, style") == []
    headings = [heading.text for heading in browser.find_elements(By.TAG_NAME, "h2")]
    assert headings == [
        "Totals",
        "By status",
        "Failure reasons",
        "By symbol",
        "By hour",
        "Change against 2026-11-22",
        "Failed attempts (1)",
        "Unknown outcomes (1)",
        "To reconcile (1)",
        "Resolved (0)",
    ]
    totals = browser.find_element(By.ID, "totals").text.split("\n")
    assert totals == [
        "TRANSACTIONS", "7", "USERS", "1", "VALUE BOUGHT", "3,001.50 USD",
        "FAILED", "1", "UNKNOWN", "1",
    ]  # fmt: skip
    names = [
        row.text for row in browser.find_elements(By.CSS_SELECTOR, "#symbols tr td:nth-child(2)")
    ]
    assert names == ["Apple Inc."]
    # The chart: one attempts bar per busy hour, one problems bar per hour with
    # a problem, as long as their share of the busiest hour.
    widths: dict[str, dict[int, float]] = {"attempts": {}, "problems": {}}
    for bar in browser.find_elements(By.CSS_SELECTOR, "#hours td.bar"):
        series, hour = bar.get_attribute("data-series"), bar.get_attribute("data-hour")
        assert series is not None
        assert hour is not None
        widths[series][int(hour)] = bar.rect["width"]
    assert set(widths["attempts"]) == {10, 12, 23}
    assert set(widths["problems"]) == {10, 23}
    full = widths["attempts"][10]  # 4 attempts
    assert full > 300  # a bar across the chart, in a 1280-pixel window
    assert widths["attempts"][12] / full == pytest.approx(2 / 4, abs=0.02)
    assert widths["attempts"][23] / full == pytest.approx(1 / 4, abs=0.02)
    assert widths["problems"][10] / full == pytest.approx(1 / 4, abs=0.02)


def test_the_report_lists_what_is_left_to_reconcile_and_the_days_resolutions(
    app: Flask, smtp_server: SmtpServer
) -> None:
    session = db.session()
    oldest = record(session, at(9, day=DAY - timedelta(days=3)), "unknown", reason="vendor_timeout",
                    user_id="u1", symbol="TSLA")  # fmt: skip
    settled = record(session, at(14), "unknown", reason="vendor_answer_lost", quantity=2,
                     price="10.5", user_id="u2")  # fmt: skip
    waiting = record(session, at(15), "unknown", reason="interrupted", user_id="u3")
    record(session, at(1, day=DAY + timedelta(days=1)), "unknown", reason="x", user_id="later")
    session.commit()
    resolutions.resolve(settled.id, status=ResolutionStatus.SUCCEEDED, by="carol", note="ok")
    db.session.execute(sa.update(TransactionResolution).values(resolved_at=at(18)))
    db.session.commit()

    reports.send_daily_report(DAY)

    text, html, _, _ = parts(smtp_server.messages[0])
    section = text[text.index("To reconcile:") :]
    assert section.startswith(
        f"To reconcile: 2 unknown outcomes of {DAY} or earlier not resolved yet"
    )
    listed = section.splitlines()[2:4]
    assert [line.split()[0] for line in listed] == [str(oldest.id), str(waiting.id)]
    assert re.search(r"\b1[0-9] d [0-9]+ h\b", listed[0])  # created 2026-11-20, read in December
    resolved = section[section.index(f"Resolved on {DAY}: 1") :].splitlines()
    assert resolved[2].split() == [
        str(settled.id), str(DAY), "u2", "AAPL", "2", "succeeded", "21.00", "USD", "carol", "ok"
    ]  # fmt: skip
    # The day's figures count the resolved attempt as bought, and list only the other unknown.
    assert "value bought 21.00 USD; 0 failed, 1 unknown." in text
    assert re.search(rf"^{waiting.id} .*interrupted", text, re.MULTILINE)
    assert not re.search(rf"^{settled.id} .*vendor_answer_lost", text, re.MULTILINE)
    assert 'id="to-reconcile"' in html
    assert 'id="resolved"' in html
