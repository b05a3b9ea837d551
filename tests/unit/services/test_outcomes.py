"""Outcomes kept while the ledger is away: applied once, however often they are applied."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from flask import Flask

from service.extensions import redis_store
from service.models import TransactionStatus
from service.services import outcomes, sweep
from service.services.orders import Outcome
from service.vendorapi.client import VendorOrder
from tests.buys_support import holdings, ledger, pending, summaries

BOUGHT = Outcome(
    TransactionStatus.SUCCEEDED,
    market_price=Decimal("10.5"),
    order=VendorOrder("AAPL", 2, Decimal("10.5"), Decimal("21.0")),
    vendor_status=200,
    attempts=1,
)


def test_a_kept_outcome_survives_its_trip_through_redis_exactly() -> None:
    assert Outcome.from_json(BOUGHT.as_json()) == BOUGHT
    failed = Outcome(TransactionStatus.FAILED, "vendor_rejected", vendor_status=400)
    assert Outcome.from_json(failed.as_json()) == failed


def test_a_kept_outcome_applied_twice_credits_the_holding_once(app: Flask) -> None:
    transaction_id = pending(age=timedelta(seconds=1), orders=1)
    assert outcomes.keep(transaction_id, BOUGHT)

    assert outcomes.apply_kept(transaction_id)
    assert not outcomes.apply_kept(transaction_id)  # applied: no longer kept
    outcomes.keep(transaction_id, BOUGHT)  # as if its discard had failed
    assert outcomes.apply_all_kept().applied == 1
    assert outcomes.apply_all_kept().applied == 0

    [row] = ledger()
    assert (row.status, row.total, row.attempts) == ("succeeded", Decimal("21.0"), 1)
    assert holdings()["AAPL"].quantity == 2
    assert summaries()[("succeeded", "", "AAPL")].count == 1


def test_a_row_without_a_kept_outcome_is_left_to_the_sweep(app: Flask) -> None:
    transaction_id = pending(age=timedelta(seconds=1), orders=1)

    assert not outcomes.apply_kept(transaction_id)
    assert outcomes.apply_all_kept() == outcomes.KeptOutcomes(applied=0, readable=True)
    assert [row.status for row in ledger()] == ["pending"]


def test_a_kept_outcome_the_ledger_refuses_stops_neither_the_others_nor_the_sweep(
    app: Flask,
) -> None:
    applicable = pending(age=timedelta(minutes=1), orders=1)
    abandoned = pending(age=timedelta(minutes=30), orders=1)
    outcomes.keep(applicable, BOUGHT)
    outcomes.keep(2_000_000_000, BOUGHT)  # its row is gone: the ledger cannot take it

    assert outcomes.apply_all_kept() == outcomes.KeptOutcomes(applied=1, readable=True)
    assert sweep.finalise_abandoned(timedelta(minutes=10)) == 1

    by_id = {row.id: row.status for row in ledger()}
    assert by_id == {applicable: "succeeded", abandoned: "unknown"}
    assert holdings()["AAPL"].quantity == 2
    assert redis_store.client.hkeys(outcomes.OUTCOMES_KEY) == [b"2000000000"]  # still kept
