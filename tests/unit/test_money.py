"""Money: the price band a buy accepts, in cents, and never wider than a
vendor checking it in binary floating point accepts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.money import float_within_band, price_band

TWO_PERCENT = Decimal("0.02")


@pytest.mark.parametrize(
    ("market", "low", "high"),
    [
        # exact band 0.245 … 0.255: whole cents inward
        ("0.25", "0.25", "0.25"),
        # exact band 0.49 … 0.51, but abs(0.49 - 0.5) = 0.010000000000000009 > 0.01
        ("0.50", "0.50", "0.50"),
        # abs(0.98 - 1.0) = 0.020000000000000018 > 0.02
        ("1.00", "0.99", "1.01"),
        # 98 and 102 pass the float check exactly
        ("100.00", "98.00", "102.00"),
        # 216.2566 … 225.0834 in cents, inward
        ("220.67", "216.26", "225.08"),
    ],
)
def test_the_band_is_in_cents_inward_and_float_safe(market: str, low: str, high: str) -> None:
    assert price_band(Decimal(market), TWO_PERCENT) == (Decimal(low), Decimal(high))


def test_a_float_checking_vendor_refuses_the_exact_edges_of_a_quarter() -> None:
    quarter = Decimal("0.25")
    assert not float_within_band(Decimal("0.245"), quarter, TWO_PERCENT)
    assert not float_within_band(Decimal("0.255"), quarter, TWO_PERCENT)
    assert float_within_band(Decimal("0.25"), quarter, TWO_PERCENT)


@pytest.mark.parametrize("cents", range(1, 3001))
def test_every_edge_passes_the_float_check_and_one_cent_beyond_does_not_pass_both(
    cents: int,
) -> None:
    market = Decimal(cents) / 100
    low, high = price_band(market, TWO_PERCENT)
    assert low <= market <= high
    for edge in (low, high):
        assert float_within_band(edge, market, TWO_PERCENT)
        assert abs(edge - market) <= TWO_PERCENT * market
    cent = Decimal("0.01")
    for beyond in (low - cent, high + cent):
        exact = abs(beyond - market) <= TWO_PERCENT * market
        assert not (exact and float_within_band(beyond, market, TWO_PERCENT))


def test_a_market_price_below_a_cent_accepts_nothing() -> None:
    low, high = price_band(Decimal("0.004"), TWO_PERCENT)
    assert low > high
