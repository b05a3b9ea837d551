"""Pricing: every stock reprices once per cycle, at its own seeded phase.

A stock's price during a cycle is a pure function of the seed, the stock and
the cycle number, so any moment's price can be computed without history.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import NamedTuple

from service.vendorapi.simulator.catalogue import CENT, Stock, hash64
from service.vendorapi.wire import format_vendor_time

PRICE_TOLERANCE = Decimal("0.02")
"""The vendor accepts a buy price p when |p - current| <= PRICE_TOLERANCE * current."""

_SWING = Decimal("0.05")  # a cycle price is base * (1 + _SWING * u), u in [-1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Quote(NamedTuple):
    """A stock's price at one moment, its change since the previous cycle, and
    ``since_ms``: when this price took effect, in ms since the epoch."""

    price: Decimal
    change: Decimal
    since_ms: int


def quote(stock: Stock, seed: int, reprice_seconds: int, now_ms: int) -> Quote:
    """The quote of ``stock`` at ``now_ms`` in a market of ``seed`` and cycle length."""
    cycle_ms = reprice_seconds * 1000
    phase = stock.phase_key % cycle_ms
    cycle = (now_ms - phase) // cycle_ms
    price = _cycle_price(seed, stock, cycle)
    change = price - _cycle_price(seed, stock, cycle - 1)
    return Quote(price, change, cycle * cycle_ms + phase)


def within_band(price: Decimal, current: Decimal, *, in_floats: bool = False) -> bool:
    """Whether the vendor accepts a buy at ``price`` while the stock is at ``current``
    (the band is inclusive): exactly, or with ``in_floats`` in binary floating
    point as a JavaScript vendor would (at 0.25 that refuses 0.245 and 0.255:
    ``abs(0.245 - 0.25)`` is ``0.0050000000000000044`` in doubles)."""
    if in_floats:
        # Math.abs(price - current) <= 0.02 * current, on doubles. Written here
        # apart from the service's model of it (service.money), which the tests
        # check against this.
        return abs(float(price) - float(current)) <= float(PRICE_TOLERANCE) * float(current)
    return abs(price - current) <= PRICE_TOLERANCE * current


def at_least_cents(amount: Decimal) -> Decimal:
    """``amount`` written with at least two decimals (220 -> 220.00, 0.2551 unchanged)."""
    cents = amount.quantize(CENT)
    return cents if cents == amount else amount


def vendor_time(ms: int) -> str:
    """``ms`` since the epoch in the vendor's timestamp format."""
    return format_vendor_time(_EPOCH + timedelta(milliseconds=ms))


def _cycle_price(seed: int, stock: Stock, cycle: int) -> Decimal:
    """The price of ``stock`` during ``cycle``: base +/- 5 %, in cents, >= 0.01."""
    unit = Decimal(hash64(seed, stock.symbol, cycle)) / Decimal(2**63) - 1
    return max((stock.base * (1 + _SWING * unit)).quantize(CENT, ROUND_HALF_UP), CENT)
