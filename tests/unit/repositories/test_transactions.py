"""The ledger repository on PostgreSQL: claims and the once-only move out of pending."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flask import Flask

from service.extensions import db
from service.models.base import utcnow
from service.repositories import transactions
from tests.buys_support import claim


def _final(status: str = "failed") -> dict[str, object]:
    return {"status": status, "reason": "vendor_unavailable", "completed_at": utcnow()}


def test_a_key_is_claimed_once_per_user(app: Flask) -> None:
    first = claim("k")
    assert first is not None
    assert claim("k") is None
    assert claim("k", user_id="bob") is not None
    assert transactions.by_idempotency_key(db.session(), "alice", "k").id == first


def test_without_a_key_every_claim_inserts(app: Flask) -> None:
    ids = {claim(None) for _ in range(3)}
    assert None not in ids
    assert len(ids) == 3


def test_an_attempt_leaves_pending_once(app: Flask) -> None:
    transaction_id = claim(None)
    assert transaction_id is not None
    session = db.session()

    row = transactions.finalise(session, transaction_id, _final("failed"))
    assert row is not None
    assert (row.status, row.reason) == ("failed", "vendor_unavailable")
    assert transactions.finalise(session, transaction_id, _final("succeeded")) is None
    session.commit()
    left = transactions.finalise_pending_before(session, utcnow(), _final(), orders_sent=False)
    assert left == []


def test_only_attempts_older_than_the_cutoff_are_finalised(app: Flask) -> None:
    transaction_id = claim(None)
    session = db.session()
    hour_ago, soon = utcnow() - timedelta(hours=1), utcnow() + timedelta(seconds=1)
    early = transactions.finalise_pending_before(session, hour_ago, _final(), orders_sent=False)
    assert early == []
    (row,) = transactions.finalise_pending_before(session, soon, _final(), orders_sent=False)
    assert row.id == transaction_id


def test_attempts_are_finalised_by_whether_they_counted_an_order(app: Flask) -> None:
    session = db.session()
    unsent, sent = claim(None), claim(None)
    assert unsent is not None
    assert sent is not None
    assert transactions.count_order(session.connection(), sent, Decimal("10.4"))
    soon = utcnow() + timedelta(seconds=1)

    (found,) = transactions.finalise_pending_before(session, soon, _final(), orders_sent=True)
    (other,) = transactions.finalise_pending_before(session, soon, _final(), orders_sent=False)

    assert (found.id, found.attempts, found.market_price) == (sent, 1, Decimal("10.4"))
    assert (other.id, other.attempts) == (unsent, 0)
    assert not transactions.count_order(
        session.connection(), sent, Decimal("10.4")
    )  # final: no more orders
