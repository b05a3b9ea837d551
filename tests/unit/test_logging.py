"""Logs are JSON (or text) lines that carry the request id; one per request."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.logging import (
    JsonFormatter,
    TextFormatter,
    configure_logging,
    log_unsuccessful_buy,
)


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


def test_text_format_is_one_readable_line_with_the_same_fields() -> None:
    record = logging.LogRecord(
        "service.requests", logging.INFO, __file__, 1, "GET /stocks 200", None, None
    )
    record.status = 200
    line = TextFormatter().format(record)
    assert " INFO service.requests: GET /stocks 200  status=200" in line
    assert line.split(" ", 1)[0].endswith("+00:00")  # the UTC time first
    assert "{" not in line


def test_log_format_text_installs_the_text_formatter() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("INFO", "text")
        assert isinstance(root.handlers[0].formatter, TextFormatter)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "service.requests"]


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the service's JSON handler writes for request lines (formatted while
    the request runs, as in production)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service.requests")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(saved)


def test_each_request_is_one_info_line_with_its_fields(
    client: FlaskClient, json_lines: io.StringIO
) -> None:
    response = client.get(
        "/users/alice/portfolios",
        headers={"X-Request-ID": "req-42"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert response.status_code == 200
    [line] = json_lines.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["message"] == "GET /users/alice/portfolios 200"
    assert entry["method"] == "GET"
    assert entry["route"] == "/users/<userId>/portfolios"
    assert entry["endpoint"] == "portfolios.list_portfolios"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0
    assert entry["client"] == "203.0.113.7"
    assert entry["user"] == "alice"
    assert entry["request_id"] == "req-42"


def test_errors_are_logged_with_their_status_and_no_user_when_unknown(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.requests")
    client.get("/stocks?limit=0")
    client.get("/no/such/page")
    first, second = _request_lines(caplog)
    assert (first.status, first.route, first.levelname) == (400, "/stocks", "INFO")  # type: ignore[attr-defined]
    assert "user" not in vars(first)
    assert (second.status, second.route, second.endpoint) == (404, None, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_and_scrapes_are_logged_at_debug_only(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.INFO, logger="service.requests")
    client.get(path)
    assert _request_lines(caplog) == []
    caplog.set_level(logging.DEBUG, logger="service.requests")
    client.get(path)
    assert [record.levelname for record in _request_lines(caplog)] == ["DEBUG"]


def test_the_client_address_is_the_one_the_trusted_proxy_saw(
    make_app: Callable[..., Flask], json_lines: io.StringIO
) -> None:
    client = make_app(trusted_proxies=1).test_client()
    client.get(
        "/stocks?limit=1",
        headers={"X-Forwarded-For": "198.51.100.9"},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    [line] = json_lines.getvalue().splitlines()
    assert json.loads(line)["client"] == "198.51.100.9"


def test_an_unsuccessful_buy_is_one_warning_with_what_an_operator_needs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="service.buys")
    log_unsuccessful_buy(17, "unknown", "vendor_timeout", 1)
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == "buy 17: unknown (vendor_timeout) after 1 vendor attempt(s)"
    fields = json.loads(JsonFormatter().format(record))
    assert (fields["transaction_id"], fields["status"], fields["reason"], fields["attempts"]) == (
        17,
        "unknown",
        "vendor_timeout",
        1,
    )
