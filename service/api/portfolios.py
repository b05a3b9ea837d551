"""``GET /users/{userId}/portfolios``."""

from __future__ import annotations

from service.api import Blueprint
from service.schemas.portfolios import UserPathSchema, UserPortfoliosSchema
from service.services import portfolios
from service.services.portfolios import UserPortfolios

blp = Blueprint("portfolios", __name__, description="What users hold, valued at cached prices.")


@blp.get("/users/<userId>/portfolios")
@blp.arguments(UserPathSchema, location="path", arg_name="path")
@blp.response(200, UserPortfoliosSchema)
def list_portfolios(path: dict[str, str], **_unvalidated: str) -> UserPortfolios:
    """A user's portfolios with holdings, cost basis and market value.

    Never calls the vendor: market values use cached prices, each marked with
    its age; a holding without a cached price has null market fields. A user
    with no purchases gets `{"items": []}`.
    """
    return portfolios.user_portfolios(path["user_id"])
