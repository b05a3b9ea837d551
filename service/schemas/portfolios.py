"""Schemas of ``GET /users/{userId}/portfolios``."""

from __future__ import annotations

from marshmallow import Schema, fields

from service.schemas.fields import Money, UserId


class UserPathSchema(Schema):
    user_id = UserId(required=True, data_key="userId")


class HoldingSchema(Schema):
    symbol = fields.String()
    quantity = fields.Integer()
    average_price = Money(
        data_key="averagePrice", metadata={"description": "Cost basis / quantity."}
    )
    cost_basis = Money(data_key="costBasis", metadata={"description": "What the shares cost."})
    market_price = Money(
        data_key="marketPrice",
        allow_none=True,
        metadata={"description": "Last cached vendor price; null when none is cached."},
    )
    market_value = Money(data_key="marketValue", allow_none=True)
    price_as_of = fields.DateTime(
        data_key="priceAsOf",
        allow_none=True,
        metadata={"description": "When the service read that price from the vendor."},
    )
    price_age_seconds = fields.Integer(data_key="priceAgeSeconds", allow_none=True)


class TotalsSchema(Schema):
    cost_basis = Money(data_key="costBasis")
    market_value = Money(
        data_key="marketValue",
        allow_none=True,
        metadata={"description": "Null unless every holding has a cached price."},
    )


class PortfolioSchema(Schema):
    name = fields.String(metadata={"example": "default"})
    created_at = fields.DateTime(data_key="createdAt")
    holdings = fields.List(fields.Nested(HoldingSchema))
    totals = fields.Nested(TotalsSchema)


class UserPortfoliosSchema(Schema):
    user_id = fields.String(data_key="userId")
    items = fields.List(
        fields.Nested(PortfolioSchema),
        metadata={"description": "Empty when the user never bought anything."},
    )
