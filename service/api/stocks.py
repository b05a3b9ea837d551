"""``GET /stocks``: the catalogue page by page, or a search across all of it."""

from __future__ import annotations

from typing import Any

from service.api import Blueprint, after_response
from service.schemas.errors import ErrorSchema
from service.schemas.stocks import StockListingSchema, StockQuerySchema
from service.services import stocks
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
