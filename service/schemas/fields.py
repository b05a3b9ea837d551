"""Fields shared by several features' schemas: money out, user ids, symbols and decimals in."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields, validate

from service.money import money_text

USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Any case (read as upper case): 1–10 letters and digits, starting with a letter,
# '.' or '-' only between them (BRK.B, BF-B).
SYMBOL_PATTERN = r"^(?=.{1,10}$)[A-Za-z][A-Za-z0-9]*(?:[.-][A-Za-z0-9]+)*$"
# Issued cursors stay far below this; it keeps request lines inside gunicorn's 4,094 bytes.
NEXT_TOKEN_MAX_LENGTH = 1024
# A decimal written as a string: ASCII digits, an optional point and decimals.
# Python's Decimal() would also take " 218.27 ", "1_0", "١٢" and "1e999999999".
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# Digits a decimal may have on each side of the point: far beyond any price, and
# far below what makes Decimal arithmetic overflow (1e999999999) or crawl.
MAX_DECIMAL_DIGITS = 30


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


class StrictDecimal(fields.Decimal):
    """An exact decimal, given as a JSON number or as a plain decimal string
    (``"218.27"``): no spaces, exponent, ``_``, non-ASCII digits, NaN or
    Infinity, and at most :data:`MAX_DECIMAL_DIGITS` digits on each side of
    the point, so that no later arithmetic can overflow."""

    default_error_messages = {  # noqa: RUF012 (marshmallow's documented class setting)
        **fields.Decimal.default_error_messages,
        "format": "Must be a decimal number such as 218.27: ASCII digits and an optional "
        "'.', without spaces, '_' or an exponent.",
        "range": f"Must have at most {MAX_DECIMAL_DIGITS} digits before and after the '.'.",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, str) and PLAIN_DECIMAL.fullmatch(value) is None:
            raise self.make_error("format")
        number: Decimal = self._validated(value)  # marshmallow's own Decimal checks
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)  # finite: NaN and Infinity were refused
        if number.adjusted() >= MAX_DECIMAL_DIGITS or exponent < -MAX_DECIMAL_DIGITS:
            raise self.make_error("range")
        return number


class Symbol(fields.String):
    """A stock symbol, accepted in any case and read as upper case."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "description": "The stock symbol; case does not matter.",
            "example": "AAPL",
            **kwargs.pop("metadata", {}),
        }
        error = (
            "Must be a stock symbol: 1–10 of A-Z 0-9 (any case), starting with a letter, "
            "with '.' or '-' only between letters or digits (BRK.B)."
        )
        super().__init__(
            validate=FullMatch(SYMBOL_PATTERN, error=error), metadata=metadata, **kwargs
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value.upper()
