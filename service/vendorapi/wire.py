"""The vendor's wire format, shared by the client and the simulator.

Both sides must write money and time exactly as the vendor does (DESIGN.md
section 3): JSON numbers written from a ``Decimal``'s own digits (never
through a float) and ISO-8601 UTC timestamps with milliseconds and ``Z``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import NoReturn


def dumps(value: object) -> str:
    """Compact JSON in which a ``Decimal`` is written as an exact number.

    Mappings, lists and tuples are walked; any other value is written by
    :func:`json.dumps`.
    """
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        pairs = (f"{json.dumps(str(key))}:{dumps(item)}" for key, item in value.items())
        return "{" + ",".join(pairs) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(item) for item in value) + "]"
    return json.dumps(value)


def loads(raw: str | bytes) -> object:
    """Parse the vendor's JSON: numbers with a fraction as ``Decimal``;
    ``NaN`` and ``Infinity`` are not numbers (``ValueError``)."""
    return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


def format_vendor_time(moment: datetime) -> str:
    """``moment`` (aware) as the vendor writes it, e.g. ``2026-11-24T23:35:00.000Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_vendor_time(raw: str) -> datetime:
    """Parse the vendor's ISO-8601 UTC timestamp (``2026-11-24T23:35:00.000Z``).

    A timestamp without an offset is taken as UTC; the result is always aware, in UTC.
    """
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
