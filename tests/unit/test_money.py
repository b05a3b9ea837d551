"""Money: the price band a buy accepts, exact to the ledger's six decimals,
and never wider than a vendor checking it in binary floating point accepts."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.money import float_within_band, price_band

TWO_PERCENT = Decimal("0.02")


STEP = Decimal("0.000001")


@pytest.mark.parametrize(
    ("market", "low", "high"),
    [
        # abs(0.245 - 0.25) = 0.0050000000000000044 > 0.005: both edges one step in
        ("0.25", "0.245001", "0.254999"),
        # abs(0.49 - 0.5) = 0.010000000000000009 > 0.01
        ("0.50", "0.490001", "0.509999"),
        # abs(0.98 - 1.0) = 0.020000000000000018 > 0.02
        ("1.00", "0.980001", "1.019999"),
        # 98 and 102 pass the float check exactly
        ("100.00", "98", "102"),
        # 216.2566 passes in floats, 225.0834 does not
        ("220.67", "216.2566", "225.083399"),
    ],
)
def test_the_band_is_exact_and_float_safe(market: str, low: str, high: str) -> None:
    assert price_band(Decimal(market), TWO_PERCENT) == (Decimal(low), Decimal(high))


def test_a_float_checking_vendor_refuses_the_exact_edges_of_a_quarter() -> None:
    quarter = Decimal("0.25")
    assert not float_within_band(Decimal("0.245"), quarter, TWO_PERCENT)
    assert not float_within_band(Decimal("0.255"), quarter, TWO_PERCENT)
    assert float_within_band(Decimal("0.25"), quarter, TWO_PERCENT)


@pytest.mark.parametrize("cents", range(1, 3001))
def test_every_edge_passes_the_float_check_and_one_step_beyond_does_not_pass_both(
    cents: int,
) -> None:
    market = Decimal(cents) / 100
    low, high = price_band(market, TWO_PERCENT)
    assert low <= market <= high
    for edge in (low, high):
        assert float_within_band(edge, market, TWO_PERCENT)
        assert abs(edge - market) <= TWO_PERCENT * market
    for beyond in (low - STEP, high + STEP):
        exact = abs(beyond - market) <= TWO_PERCENT * market
        assert not (exact and float_within_band(beyond, market, TWO_PERCENT))
