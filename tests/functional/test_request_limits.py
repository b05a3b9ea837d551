"""Requests the service refuses before reading them: a body over
``MAX_REQUEST_BYTES`` (413 ``request_too_large``, read first, before any limit
slot), and what gunicorn itself refuses (a bad request line, a URI or headers
too long) — every one answered in the JSON error envelope."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from service.vendorapi.simulator import Simulator
from tests.buys_support import ledger
from tests.functional.servers import Gunicorn

BUY = "/stocks/AAPL/buy"


def test_a_body_over_max_request_bytes_is_413_in_the_envelope_and_buys_nothing(
    make_app: Callable[..., Flask], simulator: Simulator
) -> None:
    app = make_app(max_request_bytes=100, rate_limit_enabled=True)
    body = json.dumps({"userId": "alice", "price": "1.00", "quantity": 1, "pad": "x" * 100})

    response = app.test_client().post(BUY, data=body, content_type="application/json")

    assert response.status_code == 413
    assert response.json == {
        "error": {
            "code": "request_too_large",
            "message": "The request body is larger than the limit of 100 bytes.",
            "details": {"limit": 100},
        }
    }
    assert simulator.stats()["requests"] == {"list": 0, "buy": 0}
    with app.app_context():
        assert ledger() == []


def test_a_body_at_the_limit_is_read(make_app: Callable[..., Flask]) -> None:
    body = '{"userId": "alice"}'
    client = make_app(max_request_bytes=len(body)).test_client()
    response = client.post(BUY, data=body, content_type="application/json")
    assert response.status_code == 400  # read and parsed: price and quantity are missing
    assert response.json is not None
    assert set(response.json["error"]["details"]["fields"]) == {"price", "quantity"}


def test_every_endpoint_refuses_a_declared_oversized_body(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_request_bytes=10).test_client()
    response = client.get("/stocks", data="x" * 11)
    assert response.status_code == 413
    assert response.json is not None
    assert response.json["error"]["code"] == "request_too_large"


def test_openapi_documents_413_where_a_json_body_is_read(make_app: Callable[..., Flask]) -> None:
    document = make_app().test_client().get("/openapi.json").json
    assert document is not None
    buy = document["paths"]["/stocks/{symbol}/buy"]["post"]
    assert "request_too_large" in buy["responses"]["413"]["description"]
    assert "413" not in document["paths"]["/stocks"]["get"]["responses"]


def _raw(url: str, data: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send ``data`` as is; the status, headers and JSON body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT A REQUEST LINE\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
    ],
)
def test_what_gunicorn_refuses_is_answered_in_the_json_envelope(
    gunicorn: Callable[..., Gunicorn], request_bytes: bytes, status: int, code: str
) -> None:
    server = gunicorn(GUNICORN_THREADS="2", RATE_LIMIT_ENABLED="false")

    got, headers, body = _raw(server.url, request_bytes)

    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-content-type-options"] == "nosniff"
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["details"] == {}
