"""Schemas of ``GET /users/{userId}/transactions[/{id}]``: the history's filters
and pages (each item is a :class:`~service.schemas.buys.TransactionSchema`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from service.models import TransactionStatus
from service.schemas.buys import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    TransactionSchema,
)
from service.schemas.fields import NEXT_TOKEN_MAX_LENGTH, Symbol, UserId
from service.schemas.stocks import DEFAULT_LIMIT, MAX_LIMIT

_STATUSES = [status.value for status in TransactionStatus]
_MOMENT = (
    "an ISO-8601 date (2026-12-01) or date-time (2026-12-01T09:30:00Z), UTC unless it has an offset"
)


class StatusList(fields.String):
    """Comma-separated transaction statuses, loaded as a tuple without repeats."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        statuses = tuple(dict.fromkeys(part.strip() for part in value.split(",")))
        unknown = [status for status in statuses if status not in _STATUSES]
        if unknown or not statuses:
            raise ValidationError(f"Each must be one of {', '.join(_STATUSES)}.")
        return statuses


class UtcMoment(fields.String):
    """A moment: an ISO-8601 date (its midnight) or date-time; without an
    offset it is UTC, with one it is converted to UTC."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            moment = datetime.fromisoformat(value)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (TypeError, ValueError, OverflowError):  # OverflowError: beyond year 1–9999 in UTC
            raise ValidationError(f"Must be {_MOMENT}.") from None


class HistoryQuerySchema(Schema):
    statuses = StatusList(
        data_key="status",
        metadata={
            "description": f"One or more of {', '.join(_STATUSES)}, comma-separated.",
            "example": "failed,unknown",
        },
    )
    symbol = Symbol(metadata={"description": "Only this stock; case does not matter."})
    start = UtcMoment(
        data_key="from",
        metadata={"description": f"Created at or after this: {_MOMENT}.", "example": "2026-12-01"},
    )
    end = UtcMoment(
        data_key="to",
        metadata={"description": f"Created before this (exclusive): {_MOMENT}."},
    )
    idempotency_key = fields.String(
        data_key="idempotencyKey",
        validate=validate.Length(min=1, max=IDEMPOTENCY_KEY_MAX_LENGTH),
        metadata={"description": "Only the attempt sent with this Idempotency-Key."},
    )
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": f"Items per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})."},
    )
    next_token = fields.String(
        data_key="nextToken",
        load_default=None,
        validate=validate.Length(max=NEXT_TOKEN_MAX_LENGTH),
        metadata={
            "description": "The `nextToken` of the previous page, unchanged, with the same "
            "filters (empty: the first page). Signed: any other value is a 400 invalid_token."
        },
    )

    @validates_schema
    def ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        start, end = data.get("start"), data.get("end")
        if start is not None and end is not None and end <= start:
            raise ValidationError("Must be later than from.", field_name="to")


class TransactionPathSchema(Schema):
    user_id = UserId(required=True, data_key="userId")
    id = fields.String(
        required=True,
        metadata={"description": "The transaction's id (`id` of a Transaction)."},
    )


class TransactionPageSchema(Schema):
    user_id = fields.String(data_key="userId")
    items = fields.List(fields.Nested(TransactionSchema), metadata={"description": "Newest first."})
    next_token = fields.String(
        data_key="nextToken",
        allow_none=True,
        metadata={"description": "Pass it back for the next page; null on the last page."},
    )
