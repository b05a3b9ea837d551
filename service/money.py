"""Money: exact ``Decimal`` amounts, how the ledger rounds them and how answers write them."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

_CENTS = Decimal("0.01")
LEDGER_PLACES = 6  # the ledger's NUMERIC(…, 6): prices and amounts to the millionth
_LEDGER_STEP = Decimal(1).scaleb(-LEDGER_PLACES)


def money_text(value: Decimal) -> str:
    """``value`` as the decimal string responses use: at least two decimals,
    no trailing zeros beyond them (``98.500000`` → ``"98.50"``, ``0.255000`` →
    ``"0.255"``). Exact: only zeros are dropped."""
    normal = value.normalize()
    if normal.as_tuple().exponent > -2:  # type: ignore[operator]
        normal = value.quantize(_CENTS)
    return format(normal, "f")


def fits_ledger(value: Decimal) -> bool:
    """``value`` is a finite amount with at most :data:`LEDGER_PLACES` decimals."""
    exponent = value.normalize().as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -LEDGER_PLACES


def quantize_money(value: Decimal) -> Decimal:
    """Round an amount to the six decimals the ledger stores."""
    return value.quantize(_LEDGER_STEP)


def price_band(market: Decimal, tolerance: Decimal) -> tuple[Decimal, Decimal]:
    """The lowest and highest buy price (both accepted) at a ``market`` price.

    Exactly ``market ± tolerance × market``, in the ledger's six decimals and
    inward, then each edge moved one step (0.000001) inward while a vendor
    that checks the band in binary floating point (as a JavaScript service
    does) would refuse it: at ``0.25`` the exact band is ``0.245 … 0.255``,
    but ``abs(0.245 - 0.25)`` is ``0.0050000000000000044`` in floats, more
    than ``0.005``, so the band is ``0.245001 … 0.254999``. Every price between
    two accepted edges is accepted by both checks (float rounding is
    monotonic). A market price too small to have a band accepts nothing
    (``low > high``).
    """
    spread = tolerance * market
    low = (market - spread).quantize(_LEDGER_STEP, ROUND_CEILING)
    high = (market + spread).quantize(_LEDGER_STEP, ROUND_FLOOR)
    while low <= high and not float_within_band(low, market, tolerance):
        low += _LEDGER_STEP
    while low <= high and not float_within_band(high, market, tolerance):
        high -= _LEDGER_STEP
    return low, high


def float_within_band(price: Decimal, market: Decimal, tolerance: Decimal) -> bool:
    """The band check as a vendor computing in binary floating point makes it:
    ``abs(price - market) <= tolerance * market`` on doubles."""
    return abs(float(price) - float(market)) <= float(tolerance) * float(market)
