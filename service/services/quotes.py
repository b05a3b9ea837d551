"""The quote preview (``GET /stocks/{symbol}``, DESIGN §4): what a buy of a
stock would be checked against right now.

The quote comes from the buy's own price path
(:func:`service.services.stocks.market_price`: a cached quote of this
repricing cycle, else one vendor page through the symbol → token map), and
the band from the buy's own :func:`service.money.price_band`, so a buy at
``band.low`` or ``band.high`` placed before ``valid_until`` passes the price
check, and one step (0.000001) outside does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from service.config import current_settings
from service.marketdata import HIT, MISS, clock
from service.marketdata.codec import Quote
from service.money import price_band
from service.services.stocks import ListingMeta, market_price


class PriceBand(NamedTuple):
    """The lowest and highest buy price accepted, both included."""

    low: Decimal
    high: Decimal


@dataclass(frozen=True)
class QuotePreview:
    """A stock's current quote, the band a buy is accepted in, and until when
    (``valid_until``: the vendor may reprice the stock from then on)."""

    quote: Quote
    band: PriceBand
    valid_until: datetime
    meta: ListingMeta


def preview(symbol: str) -> QuotePreview:
    """The quote preview of ``symbol``.

    ``meta.cache`` is ``hit`` when the quote was read from the vendor before
    this call, ``miss`` when it was read while this call ran (never ``stale``: the buy path
    never trades on a copy from an earlier cycle).

    :raises UnknownSymbol: the vendor does not list ``symbol``;
    :raises VendorError: the vendor failed (``CircuitOpen`` included).
    """
    started = clock.now()
    quote = market_price(symbol)
    settings = current_settings()
    age = max(0, int((clock.now() - quote.fetched_at).total_seconds()))
    return QuotePreview(
        quote=quote,
        band=PriceBand(*price_band(quote.price, settings.price_tolerance)),
        valid_until=quote.reprices_at(settings.cache_ttl_seconds),
        meta=ListingMeta(HIT if quote.fetched_at < started else MISS, quote.fetched_at, age),
    )
