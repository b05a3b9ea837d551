"""Stock prices for the buy path: what the listing's page cache changes for it."""

from __future__ import annotations

import pytest
import responses
from flask import Flask

from service.errors import VendorBadResponse
from service.services import stocks
from service.vendor.simulator import Simulator


def test_a_price_look_up_warms_the_listing(app: Flask, simulator: Simulator) -> None:
    quote = stocks.market_price("AAPL")
    assert quote.price == simulator.price("AAPL")
    calls = simulator.stats()["requests"]["list"]
    page_of_aapl = stocks.known_token("AAPL") or None
    listing = stocks._load_page(page_of_aapl, from_client=False)
    assert listing[1] == stocks.HIT
    assert simulator.stats()["requests"]["list"] == calls


@responses.activate
def test_an_unreadable_quote_is_a_bad_response_not_an_unknown_symbol(app: Flask) -> None:
    base = app.extensions["settings"].vendor_base_url
    responses.get(
        f"{base}/stocks",
        json={"status": 200, "data": {"items": [{"symbol": "AAPL", "price": "n/a"}]}},
    )
    with pytest.raises(VendorBadResponse):
        stocks.market_price("AAPL")
    assert len(responses.calls) == 1  # no walk of the catalogue
