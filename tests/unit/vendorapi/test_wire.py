"""The vendor's wire format, as both the client and the simulator write it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from service.vendorapi.wire import dumps, format_vendor_time, parse_vendor_time


@pytest.mark.parametrize(
    ("amount", "written"),
    [
        (Decimal("0.245"), "0.245"),
        (Decimal("220.6700000000000000001"), "220.6700000000000000001"),
        (Decimal("1E+2"), "100"),
        (Decimal("225.380"), "225.380"),
    ],
)
def test_money_is_written_with_its_own_digits(amount: Decimal, written: str) -> None:
    body = dumps({"price": amount, "quantity": 1})
    assert body == f'{{"price":{written},"quantity":1}}'
    assert json.loads(body, parse_float=Decimal)["price"] == amount


def test_nested_values_are_plain_json() -> None:
    value = {"data": {"items": [{"symbol": "BRK.B", "price": Decimal("0.25")}], "more": None}}
    assert json.loads(dumps(value), parse_float=Decimal) == value


def test_a_timestamp_is_written_in_utc_with_milliseconds() -> None:
    moment = datetime(2026, 11, 25, 1, 35, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_vendor_time(moment) == "2026-11-24T23:35:00.123Z"


@pytest.mark.parametrize(
    "raw",
    ["2026-11-24T23:35:00.123Z", "2026-11-25T01:35:00.123+02:00", "2026-11-24T23:35:00.123"],
)
def test_a_vendor_timestamp_is_read_as_utc(raw: str) -> None:
    parsed = parse_vendor_time(raw)
    assert parsed == datetime(2026, 11, 24, 23, 35, 0, 123000, tzinfo=UTC)
    assert format_vendor_time(parsed) == "2026-11-24T23:35:00.123Z"
