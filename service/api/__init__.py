"""HTTP blueprints. A route parses input, calls one service function, dumps the result."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import flask_smorest
from flask import Flask, Request
from marshmallow import RAISE, Schema
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import UnsupportedMediaType

from service.errors import InvalidInput
from service.schemas.errors import ErrorSchema

JSON_ONLY = "The request body must be JSON, sent with Content-Type: application/json"


class _Parser(FlaskParser):
    """webargs' Flask parser: 400s, unknown query parameters refused like
    unknown body fields, and JSON bodies only, read exactly."""

    # 400 for malformed input; 422 is kept for a well-formed buy the market refuses.
    DEFAULT_VALIDATION_STATUS = 400
    DEFAULT_UNKNOWN_BY_LOCATION = {  # noqa: RUF012 (webargs' documented class setting)
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "query": RAISE,
        "querystring": RAISE,
    }

    def load_json(self, req: Request, schema: Schema) -> Any:
        """The body as JSON; numbers with a fraction become Decimal, never float
        (a price of 0.1 arrives as exactly ``Decimal("0.1")``).

        :raises UnsupportedMediaType: the body is not declared JSON (curl's
            default form encoding, ``text/plain``, or no body and no type);
        :raises InvalidInput: the body is not valid UTF-8 JSON.
        """
        if not is_json_request(req):
            got = req.mimetype or "no Content-Type"
            raise UnsupportedMediaType(f"{JSON_ONLY} (got {got}).")
        body = req.get_data(cache=True)
        if not body:
            return core.missing  # every required field is then named as missing
        try:
            return json.loads(body.decode("utf-8"), parse_float=Decimal)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"The request body is not valid JSON: {exc}.", details={"fields": {}}
            ) from None


class Api(flask_smorest.Api):
    """flask-smorest's Api, documenting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema


api = Api()


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest blueprint whose argument errors are 400s."""

    ARGUMENTS_PARSER = _Parser()

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Any:
        """flask-smorest's ``arguments``; a JSON body also documents the 415
        :meth:`_Parser.load_json` answers."""
        parse = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse
        document = self.alt_response(
            415,
            schema=ErrorSchema,
            description="unsupported_media_type: the body is not sent as "
            "Content-Type: application/json.",
        )
        return lambda func: document(parse(func))


def register_blueprints(app: Flask) -> None:
    from service.api import health

    app.register_blueprint(health.blp)
    for blueprint in _feature_blueprints():
        api.register_blueprint(blueprint)


def _feature_blueprints() -> list[Blueprint]:
    from service.api import buys, portfolios, stocks

    return [stocks.blp, buys.blp, portfolios.blp]
