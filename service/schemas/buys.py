"""Schemas of ``POST /stocks/{symbol}/buy``: the request (path, header, body) and the
transaction it answers with."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from service.auth import bind_user
from service.models import ResolutionStatus, TransactionStatus
from service.money import LEDGER_PLACES, fits_ledger
from service.schemas.fields import Money, StrictDecimal, Symbol, UserId

# A letter, then letters and digits, with single '.' or '-' between them
# (AAPL, BRK.B, BF-B): never ".", ".." or "-", which would name other URLs.
MAX_QUANTITY = 1_000_000
# price × MAX_QUANTITY must fit the ledger's NUMERIC(20, 6), i.e. stay below 10^14.
MAX_PRICE = Decimal(10**8)
IDEMPOTENCY_KEY_MAX_LENGTH = 255


class SymbolPathSchema(Schema):
    symbol = Symbol(required=True)


class IdempotencyHeaderSchema(Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=IDEMPOTENCY_KEY_MAX_LENGTH),
        metadata={
            "description": "Makes the buy safe to retry: the same key (per user) with the "
            "same body answers with the first response and buys nothing more.",
            "example": "4f1c2a7e-order-17",
        },
    )


def _at_most_six_decimals(value: Decimal) -> None:
    if not fits_ledger(value):
        raise ValidationError(f"At most {LEDGER_PLACES} decimals.")


class BuyRequestSchema(Schema):
    user_id = UserId(
        required=True,
        data_key="userId",
        metadata={
            "description": "The buyer: 1–64 letters, digits, '_' or '-'. With AUTH_MODE=jwt it "
            "may be omitted (the token's user buys) and must otherwise be the token's user (403)."
        },
    )
    price = StrictDecimal(
        required=True,
        validate=[
            validate.Range(min=0, min_inclusive=False, max=MAX_PRICE, max_inclusive=False),
            _at_most_six_decimals,
        ],
        metadata={
            "description": "The price per share the buyer expects: a JSON number or a "
            f"decimal string, > 0, at most {LEDGER_PLACES} decimals. It must lie within "
            "PRICE_TOLERANCE of the market price.",
            # Numbers, not the Decimals apispec would write as strings (invalid OpenAPI).
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": int(MAX_PRICE),
            "exclusiveMaximum": True,
            "example": 220.67,
        },
    )
    quantity = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )

    @pre_load
    def bind_buyer(self, data: Any, **_kwargs: Any) -> Any:
        return bind_user(data, "userId")


class ResolutionSchema(Schema):
    """An operator's resolution of an ``unknown`` attempt, once the vendor
    confirmed its outcome."""

    status = fields.String(metadata={"enum": [status.value for status in ResolutionStatus]})
    executed_price = Money(
        data_key="executedPrice", metadata={"description": "Null when the order failed."}
    )
    total = Money(metadata={"description": "Executed price × quantity; null when it failed."})
    resolved_by = fields.String(data_key="by", metadata={"description": "The operator."})
    note = fields.String(metadata={"description": "How the outcome was confirmed."})
    resolved_at = fields.DateTime(data_key="resolvedAt")


class TransactionSchema(Schema):
    """A buy attempt as recorded in the ledger."""

    id = fields.Integer(metadata={"description": "The ledger id of the attempt."})
    user_id = fields.String(data_key="userId")
    symbol = fields.String()
    quantity = fields.Integer()
    requested_price = Money(data_key="requestedPrice")
    market_price = Money(
        data_key="marketPrice", metadata={"description": "The price checked against."}
    )
    executed_price = Money(
        data_key="executedPrice", metadata={"description": "The vendor's execution price."}
    )
    total = Money(metadata={"description": "What the vendor charged."})
    status = fields.String(metadata={"enum": [status.value for status in TransactionStatus]})
    reason = fields.String(
        metadata={"description": "Why it did not succeed (machine-readable); null if it did."}
    )
    attempts = fields.Integer(
        metadata={
            "description": "How many times the order was sent to the vendor; each is "
            "counted before it is sent, so 0 means no order can exist."
        }
    )
    idempotency_key = fields.String(data_key="idempotencyKey")
    resolution = fields.Nested(
        ResolutionSchema,
        allow_none=True,
        metadata={"description": "Null unless an operator resolved an unknown outcome."},
    )
    created_at = fields.DateTime(data_key="createdAt")
    completed_at = fields.DateTime(data_key="completedAt")
