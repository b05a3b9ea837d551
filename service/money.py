"""Money: exact ``Decimal`` amounts, how the ledger rounds them and how answers write them."""

from __future__ import annotations

from decimal import Decimal

_CENTS = Decimal("0.01")
_LEDGER_STEP = Decimal("0.000001")


def money_text(value: Decimal) -> str:
    """``value`` as the decimal string responses use: at least two decimals,
    no trailing zeros beyond them (``98.500000`` → ``"98.50"``, ``0.255000`` →
    ``"0.255"``). Exact: only zeros are dropped."""
    normal = value.normalize()
    if normal.as_tuple().exponent > -2:  # type: ignore[operator]
        normal = value.quantize(_CENTS)
    return format(normal, "f")


def quantize_money(value: Decimal) -> Decimal:
    """Round an amount to the six decimals the ledger stores."""
    return value.quantize(_LEDGER_STEP)
