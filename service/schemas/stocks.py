"""Stocks: the listing's query string and its response."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, validate

from service.marketdata import HIT, MISS, STALE
from service.schemas.fields import NEXT_TOKEN_MAX_LENGTH, Money

DEFAULT_LIMIT = 25
MAX_LIMIT = 100
MAX_SEARCH_LENGTH = 100


class UtcTimestamp(fields.DateTime):
    """ISO-8601 in UTC with milliseconds and ``Z``, as the vendor writes it."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StockQuerySchema(Schema):
    search = fields.String(
        load_default=None,
        validate=validate.Length(max=MAX_SEARCH_LENGTH),
        metadata={
            "description": "Case-insensitive text to find in symbols or names, across the "
            "whole catalogue. Exact and leading symbol matches come first."
        },
    )
    next_token = fields.String(
        data_key="nextToken",
        load_default=None,
        validate=validate.Length(max=NEXT_TOKEN_MAX_LENGTH),
        metadata={
            "description": "The `nextToken` of the previous page, unchanged (empty: the first "
            "page). Opaque; a token belongs to the listing (search or not) that issued it."
        },
    )
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."},
    )


class StockSchema(Schema):
    symbol = fields.String(required=True)
    name = fields.String(required=True)
    price = Money(required=True, metadata={"description": "Decimal string, e.g. 98.50."})
    sector = fields.String(required=True)
    change = Money(
        required=True,
        metadata={"description": "Price change since the previous repricing, decimal string."},
    )
    lastUpdated = UtcTimestamp(
        attribute="last_updated",
        required=True,
        metadata={"description": "When the vendor last repriced the stock."},
    )


class ListingMetaSchema(Schema):
    cache = fields.String(
        required=True,
        validate=validate.OneOf([HIT, MISS, STALE]),
        metadata={
            "description": "hit: served from the cache; miss: fetched from the vendor now; "
            "stale: the vendor failed and this is the last good copy."
        },
    )
    asOf = UtcTimestamp(
        attribute="as_of",
        required=True,
        metadata={"description": "When the oldest data on this page was fetched from the vendor."},
    )
    ageSeconds = fields.Integer(
        attribute="age_seconds", required=True, metadata={"description": "Seconds since asOf."}
    )


class StockListingSchema(Schema):
    items = fields.List(fields.Nested(StockSchema), required=True)
    nextToken = fields.String(
        attribute="next_token",
        allow_none=True,
        required=True,
        metadata={"description": "Pass it back for the next page; null on the last page."},
    )
    meta = fields.Nested(ListingMetaSchema, required=True)


class BandSchema(Schema):
    low = Money(
        data_key="min", required=True, metadata={"description": "The lowest price accepted."}
    )
    high = Money(
        data_key="max", required=True, metadata={"description": "The highest price accepted."}
    )


class QuotePreviewSchema(Schema):
    """A stock as a buy would see it now."""

    symbol = fields.String(attribute="quote.symbol", required=True)
    name = fields.String(attribute="quote.stock.name", required=True)
    price = Money(attribute="quote.price", required=True, metadata={"description": "Market price."})
    sector = fields.String(attribute="quote.stock.sector", required=True)
    change = Money(
        attribute="quote.stock.change",
        required=True,
        metadata={"description": "Price change since the previous repricing."},
    )
    lastUpdated = UtcTimestamp(
        attribute="quote.last_updated",
        required=True,
        metadata={"description": "When the vendor last repriced the stock."},
    )
    band = fields.Nested(
        BandSchema,
        required=True,
        metadata={
            "description": "Exactly the prices a buy placed now is accepted at (both ends "
            "included): PRICE_TOLERANCE around the price, to 6 decimals, narrowed where a "
            "vendor checking in binary floating point would refuse an edge."
        },
    )
    validUntil = UtcTimestamp(
        attribute="valid_until",
        required=True,
        metadata={"description": "From then on the vendor may reprice the stock (and the band)."},
    )
    meta = fields.Nested(ListingMetaSchema, required=True)
