"""``POST /stocks/{symbol}/buy``."""

from __future__ import annotations

from typing import Any

from service.api import Blueprint
from service.schemas.buys import (
    BuyRequestSchema,
    IdempotencyHeaderSchema,
    SymbolPathSchema,
    TransactionSchema,
)
from service.schemas.errors import ErrorSchema
from service.services import buys

blp = Blueprint("buys", __name__, description="Buy stocks at a price checked against the market.")


@blp.post("/stocks/<symbol>/buy")
# Instances, not classes: webargs builds a schema from a class on every request.
@blp.arguments(SymbolPathSchema(), location="path", arg_name="path")
@blp.arguments(IdempotencyHeaderSchema(), location="headers", arg_name="headers")
@blp.arguments(BuyRequestSchema(), arg_name="body")
@blp.response(201, TransactionSchema, description="Bought: the recorded transaction.")
@blp.alt_response(
    404, schema=ErrorSchema, description="unknown_symbol: the vendor lists no such stock."
)
@blp.alt_response(
    409, schema=ErrorSchema, description="idempotency_key_in_use: the first request still runs."
)
@blp.alt_response(
    422,
    schema=ErrorSchema,
    description="price_out_of_tolerance (market price and band in details), "
    "or idempotency_key_reused (the key came with another body).",
)
@blp.alt_response(
    502,
    schema=ErrorSchema,
    description="vendor_unavailable (nothing bought) or order_outcome_unknown (the order "
    "may have executed; recorded as unknown).",
)
@blp.alt_response(
    503, schema=ErrorSchema, description="circuit_open: the vendor is failing; see Retry-After."
)
def buy(
    path: dict[str, Any], headers: dict[str, Any], body: dict[str, Any], **_unvalidated: str
) -> object:
    """Buy shares of a stock.

    The attempt is recorded before the vendor is called and always ends with a
    final status (`succeeded`, `rejected`, `failed` or `unknown`). A vendor 4xx
    is passed on with the vendor's message. Send an `Idempotency-Key` to retry
    safely: the same key and body replay the first answer without buying again.
    """
    return buys.buy(symbol=path["symbol"], idempotency_key=headers.get("idempotency_key"), **body)
