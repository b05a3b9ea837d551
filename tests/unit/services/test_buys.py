"""The buy service: a late finish, unexpected errors, fingerprints and the price band."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from flask import Flask

from service.errors import OrderNotSent
from service.marketdata.codec import Quote
from service.services import buys, sweep
from service.vendorapi.errors import OrderOutcomeUnknown
from service.vendorapi.simulator import Simulator
from tests.buys_support import holdings, ledger, summaries


def test_a_buy_whose_attempt_was_abandoned_before_its_order_sends_none(
    app: Flask, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No quote cached: the claim counts no order, the price comes from the vendor.
    real_vendor_price = buys.vendor_price

    def slow_vendor_price(symbol: str) -> Quote:
        # Meanwhile, another process (the report job) finalises every pending row.
        def janitor() -> None:
            with app.app_context():
                sweep.finalise_abandoned(timedelta(0))

        thread = threading.Thread(target=janitor)
        thread.start()
        thread.join()
        return real_vendor_price(symbol)

    monkeypatch.setattr(buys, "vendor_price", slow_vendor_price)
    with pytest.raises(OrderNotSent):
        buys.buy(user_id="alice", symbol="AAPL", price=simulator.price("AAPL"), quantity=1)

    (row,) = ledger()
    assert (row.status, row.reason, row.attempts) == ("failed", "no_order_sent", 0)
    assert simulator.orders() == []  # the finalised attempt could not count an order
    assert holdings() == {}
    assert [key[:2] for key in summaries()] == [("failed", "no_order_sent")]


def test_an_unexpected_error_while_trading_still_ends_the_attempt(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(symbol: str) -> Quote:
        raise RuntimeError("bug")

    monkeypatch.setattr(buys, "vendor_price", broken)
    with pytest.raises(OrderOutcomeUnknown) as raised:
        buys.buy(user_id="alice", symbol="AAPL", price=Decimal(1), quantity=1)

    (row,) = ledger()
    assert (row.status, row.reason) == ("unknown", "internal_error")
    assert raised.value.details["transactionId"] == row.id
    assert summaries()[("unknown", "internal_error", "AAPL")].count == 1


def test_the_fingerprint_ignores_how_the_price_is_written() -> None:
    same = {
        buys.request_fingerprint("alice", "AAPL", Decimal(price), 2)
        for price in ("98.5", "98.50", "98.500000")
    }
    assert len(same) == 1
    assert buys.request_fingerprint("alice", "AAPL", Decimal("98.51"), 2) not in same
    assert buys.request_fingerprint("bob", "AAPL", Decimal("98.5"), 2) not in same
