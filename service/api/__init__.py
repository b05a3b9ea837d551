"""HTTP blueprints. A route parses input, calls one service function, dumps the result."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import flask_smorest
from flask import Flask, Request
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from service.schemas.errors import ErrorSchema

# Liveness/readiness probes, Prometheus scrapes and the API docs answer to
# anybody however saturated the API is: no rate limits, no authentication.
OPEN_BLUEPRINTS = frozenset({"health", "api-docs"})


class _Parser(FlaskParser):
    # 400 for malformed input; 422 is kept for a well-formed buy the market refuses.
    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req: Request) -> Any:
        # JSON numbers with a fraction become Decimal, never float: a price of
        # 0.1 must arrive as exactly Decimal("0.1"). Decoding errors are turned
        # into 400s by webargs' load_json.
        if not is_json_request(req):
            return core.missing
        return json.loads(req.get_data(cache=True).decode("utf-8"), parse_float=Decimal)


class Api(flask_smorest.Api):
    """flask-smorest's Api, documenting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema


api = Api()


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest blueprint whose argument errors are 400s."""

    ARGUMENTS_PARSER = _Parser()


def register_blueprints(app: Flask) -> None:
    from service.api import health

    app.register_blueprint(health.blp)
    for blueprint in _feature_blueprints():
        api.register_blueprint(blueprint)


def _feature_blueprints() -> list[Blueprint]:
    from service.api import buys, portfolios, stocks

    return [stocks.blp, buys.blp, portfolios.blp]
