"""``GET /stocks``: the catalogue page by page, or a search across all of it; and
``GET /stocks/{symbol}``, the quote preview of one stock."""

from __future__ import annotations

from typing import Any

from service.api import Blueprint, after_response
from service.schemas.buys import SymbolPathSchema
from service.schemas.errors import ErrorSchema
from service.schemas.stocks import QuotePreviewSchema, StockListingSchema, StockQuerySchema
from service.services import quotes, stocks
from service.services.quotes import QuotePreview
from service.services.stocks import StockListing

blp = Blueprint("stocks", __name__, url_prefix="/stocks", description="Stocks and their prices.")


@blp.route("", methods=["GET"])
@blp.arguments(StockQuerySchema(), location="query", as_kwargs=True)
@blp.response(200, StockListingSchema)
@blp.alt_response(503, schema=ErrorSchema, description="The vendor failed and nothing is cached.")
def list_stocks(**query: Any) -> StockListing:
    """Stocks with current prices.

    Without `search`, the vendor's catalogue page by page; with `search`, the
    matches across the whole catalogue. Follow `nextToken` until it is null.
    """
    listing = stocks.list_stocks(**query)
    after_response(listing.after_response)
    return listing


@blp.route("/<symbol>", methods=["GET"])
@blp.arguments(SymbolPathSchema, location="path", arg_name="path")
@blp.response(200, QuotePreviewSchema)
@blp.alt_response(
    404, schema=ErrorSchema, description="unknown_symbol: the vendor lists no such stock."
)
@blp.alt_response(
    502, schema=ErrorSchema, description="vendor_unavailable: the vendor failed; nothing cached."
)
@blp.alt_response(
    503, schema=ErrorSchema, description="circuit_open: the vendor is failing; see Retry-After."
)
def preview(path: dict[str, str], **_unvalidated: str) -> QuotePreview:
    """A quote preview: the stock, and the band a buy placed now is accepted in.

    Same price as a buy would be checked against (a cached quote of the current
    repricing cycle, else one vendor page). `band` is valid until `validUntil`,
    when the vendor may reprice the stock.
    """
    return quotes.preview(path["symbol"])
