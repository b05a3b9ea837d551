"""Input errors a client can act on: 415 for a body that is not JSON, plain
sentences, ``details.fields`` always an object field → messages, unknown query
parameters refused like unknown body fields. Nothing is recorded or bought."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.vendorapi.simulator import Simulator
from tests.buys_support import ledger

GOOD_BODY = '{"userId": "alice", "price": "1.00", "quantity": 1}'


def _error(response: TestResponse) -> dict[str, Any]:
    assert response.json is not None
    error: dict[str, Any] = response.json["error"]
    assert isinstance(error["details"], dict)
    if "fields" in error["details"]:
        fields = error["details"]["fields"]
        assert isinstance(fields, dict)
        assert all(isinstance(messages, list) for messages in fields.values())
    return error


@pytest.mark.parametrize(
    ("headers", "data", "got"),
    [
        # curl -d '{…}' without -H: form encoding
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            GOOD_BODY,
            "application/x-www-form-urlencoded",
        ),
        ({"Content-Type": "text/plain"}, GOOD_BODY, "text/plain"),
        ({}, "", "no Content-Type"),  # an empty POST
    ],
)
def test_a_body_that_is_not_json_is_415_and_says_what_to_send(
    client: FlaskClient, simulator: Simulator, headers: dict[str, str], data: str, got: str
) -> None:
    response = client.post("/stocks/AAPL/buy", data=data, headers=headers)
    assert response.status_code == 415
    error = _error(response)
    assert error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"]
    assert f"(got {got})" in error["message"]
    assert simulator.stats()["requests"] == {"list": 0, "buy": 0}
    assert ledger() == []


@pytest.mark.parametrize("body", ["[]", "5", '"alice"', "null"])
def test_a_json_body_that_is_not_an_object_says_so_in_a_sentence(
    client: FlaskClient, body: str
) -> None:
    response = client.post("/stocks/AAPL/buy", data=body, content_type="application/json")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert error["message"] == "The request body must be a JSON object."
    assert error["details"] == {"fields": {}}


def test_broken_json_is_400_with_where_it_broke(client: FlaskClient) -> None:
    response = client.post("/stocks/AAPL/buy", data='{"userId": ', content_type="application/json")
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert error["message"].startswith("The request body is not valid JSON: ")
    assert "column" in error["message"]


def test_missing_and_unknown_fields_are_named_in_plain_words(client: FlaskClient) -> None:
    response = client.post(
        "/stocks/AAPL/buy",
        data='{"userId": "alice", "side": "sell"}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert _error(response)["details"]["fields"] == {
        "price": ["This field is required."],
        "quantity": ["This field is required."],
        "side": ["Unknown field."],
    }


def test_a_null_is_refused_in_plain_words(client: FlaskClient) -> None:
    response = client.post(
        "/stocks/AAPL/buy",
        data='{"userId": "alice", "price": null, "quantity": 1}',
        content_type="application/json",
    )
    assert response.status_code == 400
    assert _error(response)["details"]["fields"] == {"price": ["This field must not be null."]}


def test_an_empty_json_body_names_every_required_field(client: FlaskClient) -> None:
    response = client.post("/stocks/AAPL/buy", data="", content_type="application/json")
    assert response.status_code == 400
    assert set(_error(response)["details"]["fields"]) == {"userId", "price", "quantity"}


def test_unknown_query_parameters_are_refused_by_name(
    client: FlaskClient, simulator: Simulator
) -> None:
    response = client.get("/stocks", query_string={"limit": 5, "serch": "apple"})
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_request"
    assert error["details"]["fields"] == {"serch": ["Unknown field."]}
    assert simulator.stats()["requests"]["list"] == 0


def test_openapi_documents_415_where_a_json_body_is_read(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    assert document is not None
    buy = document["paths"]["/stocks/{symbol}/buy"]["post"]
    assert "unsupported_media_type" in buy["responses"]["415"]["description"]
    assert "415" not in document["paths"]["/stocks"]["get"]["responses"]
