"""The stored forms of market data: quotes, cached pages and the catalogue (JSON)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from service.vendorapi.client import StockPage, VendorStock
from service.vendorapi.wire import parse_vendor_time


@dataclass(frozen=True)
class Quote:
    """A vendor item (price, name, sector, change) and when we read it."""

    stock: VendorStock
    fetched_at: datetime  # when we read it from the vendor

    @property
    def symbol(self) -> str:
        return self.stock.symbol

    @property
    def price(self) -> Decimal:
        return self.stock.price

    @property
    def last_updated(self) -> datetime:
        """When the vendor last repriced the item."""
        return self.stock.last_updated

    def reprices_at(self, cycle_seconds: int) -> datetime:
        """When the vendor may reprice the item next: it reprices each item
        once per cycle, so not before one cycle after its last repricing."""
        return self.last_updated + timedelta(seconds=cycle_seconds)

    def fresh_for_trading(self, now: datetime, cycle_seconds: int) -> bool:
        """True while the vendor cannot have repriced the item since we read it:
        the vendor reprices each item once per cycle."""
        cycle = timedelta(seconds=cycle_seconds)
        return now < self.reprices_at(cycle_seconds) and now < self.fetched_at + cycle

    def to_json(self) -> dict[str, str]:
        return {**_stock_json(self.stock), "fetchedAt": self.fetched_at.isoformat()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Quote:
        return cls(_stock_from_json(data), parse_vendor_time(data["fetchedAt"]))

    @classmethod
    def of(cls, item: VendorStock, fetched_at: datetime) -> Quote:
        return cls(item, fetched_at)


@dataclass(frozen=True)
class CachedPage:
    """A vendor page and when we fetched it."""

    page: StockPage
    fetched_at: datetime

    def fresh(self, now: datetime, ttl_seconds: int) -> bool:
        return now - self.fetched_at < timedelta(seconds=ttl_seconds)

    def fresh_seconds(self, now: datetime, ttl_seconds: int) -> float:
        """How long the page stays fresh from ``now`` (negative: stale since)."""
        return (self.fetched_at + timedelta(seconds=ttl_seconds) - now).total_seconds()

    def quote(self, symbol: str) -> Quote | None:
        """The page's quote of ``symbol``, or ``None`` when the page does not list it."""
        for item in self.page.items:
            if item.symbol == symbol:
                return Quote.of(item, self.fetched_at)
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "items": [_stock_json(item) for item in self.page.items],
            "nextToken": self.page.next_token,
            "fetchedAt": self.fetched_at.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CachedPage:
        items = tuple(_stock_from_json(item) for item in data["items"])
        page = StockPage(items=items, next_token=data["nextToken"])
        return cls(page, parse_vendor_time(data["fetchedAt"]))


class CatalogueEntry(NamedTuple):
    """What search matches on: the catalogue without prices."""

    symbol: str
    name: str
    sector: str


@dataclass(frozen=True)
class Catalogue:
    """Symbol, name and sector of every stock, in vendor order, and when the
    walk that saw them ended."""

    entries: tuple[CatalogueEntry, ...]
    built_at: datetime

    def lists(self, symbol: str) -> bool:
        return any(entry.symbol == symbol for entry in self.entries)

    @classmethod
    def of(cls, stocks: Iterable[VendorStock], built_at: datetime) -> Catalogue:
        entries = tuple(CatalogueEntry(s.symbol, s.name, s.sector) for s in stocks)
        return cls(entries, built_at)

    def to_json(self) -> dict[str, Any]:
        return {"builtAt": self.built_at.isoformat(), "stocks": [list(e) for e in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Catalogue:
        entries = tuple(CatalogueEntry(*entry) for entry in data["stocks"])
        return cls(entries, parse_vendor_time(data["builtAt"]))


def _stock_json(item: VendorStock) -> dict[str, str]:
    return {
        "symbol": item.symbol,
        "name": item.name,
        "price": str(item.price),
        "sector": item.sector,
        "change": str(item.change),
        "lastUpdated": item.last_updated.isoformat(),
    }


def _stock_from_json(data: dict[str, str]) -> VendorStock:
    return VendorStock(
        symbol=data["symbol"],
        name=data["name"],
        price=Decimal(data["price"]),
        sector=data["sector"],
        change=Decimal(data["change"]),
        last_updated=parse_vendor_time(data["lastUpdated"]),
    )
