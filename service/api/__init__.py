"""HTTP blueprints. A route parses input, calls one service function, dumps the result."""

from __future__ import annotations

import flask_smorest
from flask import Flask
from webargs.flaskparser import FlaskParser

from service.extensions import api


class _Parser(FlaskParser):
    # 400 for malformed input; 422 is kept for a well-formed buy the market refuses.
    DEFAULT_VALIDATION_STATUS = 400


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest blueprint whose argument errors are 400s."""

    ARGUMENTS_PARSER = _Parser()


def register_blueprints(app: Flask) -> None:
    from service.api import health

    app.register_blueprint(health.blp)
    for blueprint in _feature_blueprints():
        api.register_blueprint(blueprint)


def _feature_blueprints() -> list[Blueprint]:
    from service.api import stocks

    return [stocks.blp]
