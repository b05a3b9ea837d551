"""The report claim: who may take a day, and what a late failure may change."""

from __future__ import annotations

from datetime import date, timedelta

from flask import Flask

from service.extensions import db
from service.models import ReportRun
from service.models.base import utcnow
from service.repositories import reports as runs

DAY = date(2026, 11, 16)
LEASE = timedelta(minutes=15)


def test_a_late_failure_does_not_undo_the_run_that_took_over(app: Flask) -> None:
    session = db.session()
    first = utcnow() - timedelta(minutes=20)
    assert runs.claim_run(session, DAY, now=first, lease=LEASE, force=False) == first
    second = runs.claim_run(session, DAY, now=utcnow(), lease=LEASE, force=False)
    assert second is not None
    runs.mark_sent(session, DAY, now=utcnow(), message_id="<m@x>")

    runs.mark_failed(session, DAY, claimed_at=first, error="SMTP timed out")
    session.commit()

    run = session.get(ReportRun, DAY)
    assert run is not None
    assert (run.state, run.attempts, run.failures) == ("sent", 2, 1)


def test_only_a_failed_stale_or_forced_day_can_be_claimed(app: Flask) -> None:
    session = db.session()
    now = utcnow()
    assert runs.claim_run(session, DAY, now=now, lease=LEASE, force=False) is not None
    assert runs.claim_run(session, DAY, now=now, lease=LEASE, force=True) is None  # sending
    runs.mark_failed(session, DAY, claimed_at=now, error="boom")
    assert runs.claim_run(session, DAY, now=now, lease=LEASE, force=False) is not None
    runs.mark_sent(session, DAY, now=now, message_id="<m@x>")
    assert runs.claim_run(session, DAY, now=now, lease=LEASE, force=False) is None
    assert runs.claim_run(session, DAY, now=now, lease=LEASE, force=True) is not None
    session.commit()
