"""How the daily report is written: the message's text and HTML parts
(``service/templates/reports/daily.*``), its subject, and the number formats."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Literal

from flask import render_template

from service.services.report_content import Change, DayReport

CURRENCY = "USD"  # the vendor's prices, and so every amount, are in US dollars
CENTS = Decimal("0.01")


def render(report: DayReport, attachment: str | None, kind: Literal["txt", "html"]) -> str:
    """The message body, plain text or HTML (``service/templates/reports/daily.*``);
    ``attachment`` names the attached CSV file (``None`` in a preview)."""
    return render_template(
        f"reports/daily.{kind}",
        report=report,
        attachment=attachment,
        amount=amount,
        price=price,
        signed=signed,
        currency=CURRENCY,
    )


def subject(report: DayReport) -> str:
    """The message's subject line: the day and its headline counts."""
    if not report.transactions:
        return f"Transaction report {report.day}: no transactions"
    return (
        f"Transaction report {report.day}: {report.transactions:,} transactions, "
        f"{report.count('failed'):,} failed, {report.count('unknown'):,} unknown"
    )


def amount(value: Decimal) -> str:
    """A sum of money as the report shows it: thousands separators, rounded
    to cents (half up), with the currency: ``1,234.57 USD``."""
    return f"{value.quantize(CENTS, ROUND_HALF_UP):,} {CURRENCY}"


def price(value: Decimal) -> str:
    """A price with thousands separators and at least two decimals, never
    rounded (the ledger keeps up to six)."""
    exponent = value.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{value:,.{places}f}"


def signed(change: Change) -> str:
    """The change's difference with its sign (``+3``, ``-12.50 USD``, ``0``)."""
    delta = change.delta
    text = amount(abs(Decimal(delta))) if change.is_amount else f"{abs(delta):,}"
    return f"{'+' if delta > 0 else '-' if delta < 0 else ''}{text}"
