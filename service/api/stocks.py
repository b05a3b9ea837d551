"""``GET /stocks``: the catalogue page by page, or a search across all of it; and
``GET /stocks/{symbol}``, the quote preview of one stock."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, TypeVar

from flask import Response, current_app

from service.api import Blueprint, after_response
from service.schemas.buys import SymbolPathSchema
from service.schemas.errors import ErrorSchema
from service.schemas.stocks import (
    QuotePreviewSchema,
    StockListingSchema,
    StockQuerySchema,
    StockSchema,
)
from service.services import quotes, stocks
from service.services.quotes import QuotePreview
from service.services.stocks import StockListing

blp = Blueprint("stocks", __name__, url_prefix="/stocks", description="Stocks and their prices.")


@blp.route("", methods=["GET"])
@blp.arguments(StockQuerySchema(), location="query", as_kwargs=True)
@blp.response(200, StockListingSchema)
@blp.alt_response(503, schema=ErrorSchema, description="The vendor failed and nothing is cached.")
def list_stocks(**query: Any) -> Response:
    """Stocks with current prices.

    Without `search`, the vendor's catalogue page by page; with `search`, the
    matches across the whole catalogue. Follow `nextToken` until it is null.
    """
    listing = stocks.list_stocks(**query)
    after_response(listing.after_response)
    return _rendered(listing)


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


_Text = TypeVar("_Text", str, bytes)
_ITEMS = StockSchema(many=True)
_REST = StockListingSchema(exclude=("items",))
# Rendered listings: a page's JSON cannot change while the page is served, so
# a cached listing is rendered once per process, not per request. Items by the
# listing's content key; whole bodies by content key, next token and meta (the
# meta's age changes each second). Content-addressed, so neither serves what
# the listing does not hold; bounded by emptying each when full.
RENDERED_MEMO_SIZE = 256  # at most a few MB (100 items of JSON each)
_rendered_items: dict[Hashable, str] = {}
_rendered_bodies: dict[Hashable, bytes] = {}


def _dumps(value: Any) -> str:
    return current_app.json.dumps(value, separators=(",", ":"))


def _remember(memo: dict[Hashable, _Text], key: Hashable, value: _Text) -> _Text:
    if len(memo) >= RENDERED_MEMO_SIZE:
        memo.clear()
    memo[key] = value
    return value


def _rendered(listing: StockListing) -> Response:
    """``listing`` as :class:`StockListingSchema` dumps it (the schema stays the
    source of the document), rendered once per content key and meta.

    flask-smorest returns a view's ``Response`` as it is.
    """
    key = listing.content_key
    if key is None:
        body = _body(listing, None).encode()
    else:
        whole = (key, listing.next_token, listing.meta)
        body = _rendered_bodies.get(whole) or _remember(
            _rendered_bodies, whole, _body(listing, key).encode()
        )
    return current_app.response_class(body, content_type="application/json")


def _body(listing: StockListing, key: Hashable | None) -> str:
    items = _rendered_items.get(key) if key is not None else None
    if items is None:
        items = _dumps(_ITEMS.dump(listing.items))
        if key is not None:
            _remember(_rendered_items, key, items)
    rest = _dumps(_REST.dump(listing))  # {"nextToken":…,"meta":{…}}
    return '{"items":' + items + "," + rest[1:] + "\n"
