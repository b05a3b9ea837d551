"""Fields shared by several features' schemas: money out, user ids in."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from service.money import money_text

USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class Money(fields.String):
    """An amount of money, written as an exact decimal string (``"98.50"``)."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"format": "decimal", "example": "98.50", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else money_text(value)


class FullMatch(validate.Regexp):
    """A pattern the whole value must match (with ``re.match``, ``$`` would let a
    trailing newline through). The pattern is documented in the OpenAPI schema."""

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class UserId(fields.String):
    """A user id: 1–64 letters, digits, ``_`` or ``-``."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "description": "1–64 letters, digits, '_' or '-'.",
            "example": "alice",
            **kwargs.pop("metadata", {}),
        }
        super().__init__(
            validate=FullMatch(USER_ID_PATTERN, error="Must be 1–64 of A-Z a-z 0-9 _ -."),
            metadata=metadata,
            **kwargs,
        )
