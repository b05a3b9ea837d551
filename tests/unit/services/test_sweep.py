"""The sweep of abandoned attempts and the gauge the web pods export for it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from flask import Flask
from prometheus_client import REGISTRY

from service.models.base import utcnow
from service.services import sweep
from service.services.orders import ABANDONED_AFTER
from tests.buys_support import ledger, pending, summaries
from tests.functional.test_health import DEAD_REDIS

GAUGE = "trading_sweep_last_success_timestamp_seconds"


def _sweep_redis_errors() -> float:
    sample = {"component": "sweep"}
    return REGISTRY.get_sample_value("trading_redis_errors_total", sample) or 0.0


def _families(app: Flask) -> dict[str, list[float]]:
    return {family.name: [s.value for s in family.samples] for family in sweep.sweep_state(app)}


def _last_success(app: Flask) -> list[float]:
    return _families(app)[GAUGE]


def _finalised(app: Flask) -> list[float]:
    return _families(app)["trading_abandoned_attempts_finalised"]


def test_abandoned_attempts_end_once_unknown_if_an_order_was_sent_else_failed(app: Flask) -> None:
    sent = pending(age=timedelta(minutes=30), orders=1)
    unsent = pending(age=timedelta(minutes=30))
    young = pending(age=timedelta(seconds=5), orders=1)

    assert sweep.finalise_abandoned(timedelta(minutes=10)) == 2
    assert sweep.finalise_abandoned(timedelta(minutes=10)) == 0

    by_id = {row.id: row for row in ledger()}
    assert (by_id[sent].status, by_id[sent].reason, by_id[sent].attempts) == (
        "unknown",
        "interrupted",
        1,
    )
    assert (by_id[unsent].status, by_id[unsent].reason) == ("failed", "no_order_sent")
    assert by_id[sent].completed_at is not None
    assert by_id[young].status == "pending"
    summary = summaries()[("unknown", "interrupted", "AAPL")]
    assert (summary.count, summary.quantity, summary.amount) == (1, 2, Decimal("21"))
    assert summaries()[("failed", "no_order_sent", "AAPL")].count == 1


def test_the_default_grace_spares_an_attempt_that_may_still_send_its_order(app: Flask) -> None:
    live = pending(age=ABANDONED_AFTER - timedelta(seconds=5), orders=1)
    dead = pending(age=ABANDONED_AFTER + timedelta(seconds=5), orders=1)

    assert sweep.finalise_abandoned() == 1

    assert {row.id: row.status for row in ledger()} == {live: "pending", dead: "unknown"}


def test_the_gauge_shows_the_last_successful_sweep(app: Flask) -> None:
    assert _last_success(app) == []  # never ran: declared, no sample

    before = utcnow().timestamp()
    sweep.sweep()
    after = utcnow().timestamp()

    (stamp,) = _last_success(app)
    assert before <= stamp <= after


def test_web_pods_export_how_many_attempts_any_process_finalised(app: Flask) -> None:
    assert _finalised(app) == [0]
    pending(age=ABANDONED_AFTER + timedelta(seconds=5))
    pending(age=ABANDONED_AFTER + timedelta(seconds=9))

    sweep.sweep()
    sweep.sweep()  # nothing left: the count stays

    assert _finalised(app) == [2]


def test_without_redis_the_sweep_ends_only_the_attempts_that_sent_no_order(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(redis_url=DEAD_REDIS)
    with app.app_context():
        unsent = pending(age=ABANDONED_AFTER + timedelta(seconds=5))
        # Its outcome may be kept in the Redis that cannot be read: it waits.
        sent = pending(age=ABANDONED_AFTER + timedelta(seconds=5), orders=1)
        errors = _sweep_redis_errors()

        assert sweep.sweep() == 1

        assert {row.id: row.status for row in ledger()} == {unsent: "failed", sent: "pending"}
        assert _sweep_redis_errors() == errors + 2  # the count and the stamp, each bypassed
        assert _last_success(app) == []
