"""Portfolios: what a user holds, valued with cached prices only (no vendor call).

Quantities and cost bases come from the user's own succeeded buys (the
``holdings`` table). They are cached in Redis per user under a *generation*,
a random number that every successful buy replaces (:func:`invalidate`): a
reader stores what it read under the generation it saw *before* reading, so
a read that raced with a buy can never hide that buy from later readers.
Market values are added at read time from the cached quotes, so they are as
fresh as the quote cache, with their age shown. Redis failures fall back to
the database.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from service import cache
from service.config import current_settings
from service.extensions import db, redis_store
from service.marketdata.codec import Quote
from service.marketdata.store import cached_quotes
from service.metrics import CACHE_REQUESTS
from service.models import Portfolio
from service.models.base import utcnow
from service.money import quantize_money
from service.repositories import portfolios as portfolios_repository

# Longer than any cached entry lives: an expired generation reads as 0, which
# must not match an entry written under a later generation. Shorter than the
# limiter keys live (service/ratelimit/window.py: cache keys are evicted first).
GENERATION_TTL_SECONDS = 3 * 86_400
# A new generation equals the one it replaces once in 2**62 buys (an expired
# one reads as 0).
_GENERATION_BITS = 62


@dataclass(frozen=True)
class HoldingView:
    symbol: str
    quantity: int
    cost_basis: Decimal
    average_price: Decimal
    market_price: Decimal | None  # None: no cached price for the symbol
    market_value: Decimal | None
    price_as_of: datetime | None  # when the service read that price from the vendor
    price_age_seconds: int | None


@dataclass(frozen=True)
class Totals:
    cost_basis: Decimal
    market_value: Decimal | None  # None unless every holding has a cached price


@dataclass(frozen=True)
class PortfolioView:
    name: str
    created_at: datetime
    holdings: list[HoldingView]
    totals: Totals


@dataclass(frozen=True)
class UserPortfolios:
    user_id: str
    items: list[PortfolioView]


def user_portfolios(user_id: str) -> UserPortfolios:
    """The user's portfolios with holdings (quantity, average price, cost basis)
    and market values from cached quotes. A user who never bought anything has
    no portfolios (``items == []``)."""
    stored = _stored_portfolios(user_id)
    quotes = cached_quotes(h["symbol"] for p in stored for h in p["holdings"])
    now = utcnow()
    return UserPortfolios(user_id, [_portfolio_view(p, quotes, now) for p in stored])


def invalidate(user_id: str) -> None:
    """Make the next read of the user's portfolios come from the database.

    Call after a buy has committed. Fails open: when Redis is down the cached
    entry (if Redis still has one) lives at most ``CACHE_TTL_SECONDS``.
    """
    # A new random generation rather than INCR and EXPIRE: one plain command.
    generation = secrets.randbits(_GENERATION_BITS)
    with cache.redis_guard("cache"):
        redis_store.threads.execute(
            "SET", _generation_key(user_id), generation, "EX", GENERATION_TTL_SECONDS
        )


def _entry_key(user_id: str) -> str:
    return f"portfolios:{user_id}"


def _generation_key(user_id: str) -> str:
    return f"portfolios:{user_id}:generation"


def _stored_portfolios(user_id: str) -> list[dict[str, Any]]:
    """The portfolios as JSON-ready dicts: from the cache when it holds the
    current generation, else from the database (and then cached)."""
    generation_key, entry_key = _generation_key(user_id), _entry_key(user_id)
    found = cache.get_many_json([generation_key, entry_key])
    generation = found.get(generation_key, 0)
    entry = found.get(entry_key)
    if entry is not None and entry["generation"] == generation:
        CACHE_REQUESTS.labels("portfolios", "hit").inc()
        stored: list[dict[str, Any]] = entry["portfolios"]
        return stored
    CACHE_REQUESTS.labels("portfolios", "miss").inc()
    stored = [
        _stored(portfolio)
        for portfolio in portfolios_repository.portfolios_of(db.session(), user_id)
    ]
    cache.set_many_json(
        {entry_key: {"generation": generation, "portfolios": stored}},
        current_settings().cache_ttl_seconds,
    )
    return stored


def _stored(portfolio: Portfolio) -> dict[str, Any]:
    return {
        "name": portfolio.name,
        "createdAt": portfolio.created_at.isoformat(),
        "holdings": [
            {"symbol": h.symbol, "quantity": h.quantity, "costBasis": str(h.cost_basis)}
            for h in portfolio.holdings
        ],
    }


def _portfolio_view(
    stored: Mapping[str, Any], quotes: Mapping[str, Quote], now: datetime
) -> PortfolioView:
    holdings = [_holding_view(h, quotes.get(h["symbol"]), now) for h in stored["holdings"]]
    priced = [h.market_value for h in holdings if h.market_value is not None]
    return PortfolioView(
        name=stored["name"],
        created_at=datetime.fromisoformat(stored["createdAt"]),
        holdings=holdings,
        totals=Totals(
            cost_basis=sum((h.cost_basis for h in holdings), Decimal(0)),
            market_value=sum(priced, Decimal(0)) if len(priced) == len(holdings) else None,
        ),
    )


def _holding_view(stored: Mapping[str, Any], quote: Quote | None, now: datetime) -> HoldingView:
    quantity: int = stored["quantity"]
    cost_basis = Decimal(stored["costBasis"])
    price = quote.price if quote else None
    return HoldingView(
        symbol=stored["symbol"],
        quantity=quantity,
        cost_basis=cost_basis,
        average_price=quantize_money(cost_basis / quantity),
        market_price=price,
        market_value=None if price is None else price * quantity,
        price_as_of=quote.fetched_at if quote else None,
        price_age_seconds=max(0, int((now - quote.fetched_at).total_seconds())) if quote else None,
    )
