"""``GET /users/{userId}/transactions`` and ``GET /users/{userId}/transactions/{id}``."""

from __future__ import annotations

from typing import Any

from service.api import Blueprint
from service.schemas.buys import TransactionSchema
from service.schemas.errors import ErrorSchema
from service.schemas.portfolios import UserPathSchema
from service.schemas.transactions import (
    HistoryQuerySchema,
    TransactionPageSchema,
    TransactionPathSchema,
)
from service.services import history
from service.services.history import TransactionPage

blp = Blueprint(
    "transactions", __name__, description="A user's buy attempts: the history and one by id."
)


@blp.get("/users/<userId>/transactions")
@blp.arguments(UserPathSchema, location="path", arg_name="path")
@blp.arguments(HistoryQuerySchema, location="query", arg_name="query")
@blp.response(200, TransactionPageSchema)
@blp.alt_response(
    400,
    schema=ErrorSchema,
    description="invalid_request (a bad filter, named in details.fields) or invalid_token "
    "(a nextToken this service did not issue for this user and these filters).",
)
def list_transactions(
    path: dict[str, str], query: dict[str, Any], **_unvalidated: str
) -> TransactionPage:
    """A user's buy attempts, newest first, every final status and pending ones.

    Filter by `status`, `symbol`, `from` (inclusive) and `to` (exclusive),
    or `idempotencyKey`; follow `nextToken` (with the same filters) until it
    is null. Pages do not shift while new buys arrive: no attempt is shown
    twice or skipped.
    """
    return history.history(path["user_id"], **query)


@blp.get("/users/<userId>/transactions/<id>")
@blp.arguments(TransactionPathSchema, location="path", arg_name="path")
@blp.response(200, TransactionSchema)
@blp.alt_response(
    404,
    schema=ErrorSchema,
    description="transaction_not_found: no such id for this user (another user's "
    "transaction gets the same answer).",
)
def get_transaction(path: dict[str, str], **_unvalidated: str) -> object:
    """One buy attempt of the user, with its resolution if an operator resolved it."""
    return history.transaction(path["user_id"], path["id"])
