"""Unknown outcomes left to reconcile, as the web pods export them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from service.extensions import db
from service.models import ResolutionStatus
from service.services import resolutions
from tests.ledger import record

METRIC = "trading_unresolved_unknown_orders"


def scrape(app: Flask) -> list[float]:
    body = app.test_client().get("/metrics").get_data(as_text=True)
    return [
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == METRIC
    ]


def test_the_gauge_counts_unknown_outcomes_unresolved_for_over_an_hour(app: Flask) -> None:
    now = datetime.now(UTC)
    session = db.session()
    overdue = record(session, now - timedelta(hours=2), "unknown", reason="vendor_timeout")
    settled = record(session, now - timedelta(hours=3), "unknown", reason="vendor_answer_lost")
    record(session, now - timedelta(minutes=30), "unknown", reason="vendor_timeout")  # recent
    record(session, now - timedelta(hours=5), "failed", reason="vendor_rejected")
    session.commit()
    assert scrape(app) == [2.0]

    resolutions.resolve(
        settled.id, status=ResolutionStatus.SUCCEEDED, by="carol", note="vendor list"
    )
    assert scrape(app) == [1.0]

    resolutions.resolve(
        overdue.id,
        status=ResolutionStatus.SUCCEEDED,
        by="carol",
        note="vendor list",
        executed_price=Decimal("99.5"),
    )
    assert scrape(app) == [0.0]
