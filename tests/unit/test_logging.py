"""Logs are JSON lines that carry the request id."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from flask import Flask

from service.logging import JsonFormatter


def test_a_log_line_inside_a_request_is_json_with_the_request_id(app: Flask) -> None:
    record = logging.LogRecord(
        "service.test", logging.WARNING, __file__, 1, "hello %s", ("x",), None
    )
    record.symbol = "AAPL"
    with app.test_request_context(headers={"X-Request-ID": "req-7"}):
        app.preprocess_request()
        line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "hello x"
    assert entry["level"] == "WARNING"
    assert entry["request_id"] == "req-7"
    assert entry["symbol"] == "AAPL"
    assert entry["time"].endswith("+00:00")


def test_tracebacks_stay_inside_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "service.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc_info"]


@pytest.mark.parametrize("level", ["debug", "warning"])
def test_configure_logging_sets_the_level(level: str) -> None:
    from service.logging import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging(level.upper())
        assert root.level == getattr(logging, level.upper())
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
