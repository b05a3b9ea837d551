"""HTTP blueprints. A route parses input, calls one service function, dumps the result."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import flask_smorest
import swagger_ui_bundle
from flask import Blueprint as FlaskBlueprint
from flask import Flask, Request, Response, after_this_request, current_app, request
from marshmallow import RAISE, Schema
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import UnsupportedMediaType

from service.errors import InvalidInput
from service.schemas.errors import ErrorSchema

JSON_ONLY = "The request body must be JSON, sent with Content-Type: application/json"
# Liveness/readiness probes, Prometheus scrapes and the API docs answer to
# anybody however saturated the API is: no rate limits, no authentication.
OPEN_BLUEPRINTS = frozenset({"health", "api-docs", "api-docs-assets"})
# Answers that carry a user's data: never stored by a cache.
USER_DATA_PATH = re.compile(r"/users/|/stocks/[^/]+/buy$")
# A JSON integer in a body has at most this many digits (quantities have 7).
MAX_INT_DIGITS = 100


# Parsed query strings by schema and raw query string (_Parser.parse): short
# ones only, whose values are all immutable; emptied when full.
QUERY_MEMO_SIZE = 512
QUERY_MEMO_MAX_BYTES = 512
_IMMUTABLE = (str, int, Decimal, datetime, type(None))
_parsed_queries: dict[tuple[int, bytes], dict[str, Any]] = {}


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

    def parse(self, argmap: Any, req: Request | None = None, **kwargs: Any) -> Any:
        """webargs' parse; a query string parsed before for the same schema is
        answered from memory (parsing is pure, and a listing's query strings
        repeat: a third of its view's CPU went to parsing them)."""
        if kwargs.get("location") != "query":
            return super().parse(argmap, req, **kwargs)
        raw = (req or request).query_string
        key = (id(argmap), raw)
        parsed = _parsed_queries.get(key)
        if parsed is None:
            parsed = super().parse(argmap, req, **kwargs)  # errors are never kept
            if len(raw) <= QUERY_MEMO_MAX_BYTES and all(
                isinstance(value, _IMMUTABLE) for value in parsed.values()
            ):
                if len(_parsed_queries) >= QUERY_MEMO_SIZE:
                    _parsed_queries.clear()
                _parsed_queries[key] = parsed
        return dict(parsed)  # the view's own copy

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
            return json.loads(
                body.decode("utf-8"),
                parse_float=Decimal,
                parse_int=_json_int,
                parse_constant=_no_constant,
            )
        except (json.JSONDecodeError, UnicodeDecodeError, _NotJson) as exc:
            message = f"The request body is not valid JSON: {exc}."
        except RecursionError:
            message = "The request body is nested too deeply."
        raise InvalidInput(message, details={"fields": {}})


class _NotJson(ValueError):
    """A JSON body that Python's parser takes but this API refuses."""


def _json_int(text: str) -> int:
    """A JSON integer; one longer than any quantity or price is refused
    before Python's 4,300-digit conversion limit raises."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _NotJson(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 §6)."""
    raise _NotJson(f"{name} is not a JSON value")


class Api(flask_smorest.Api):
    """flask-smorest's Api, documenting our error envelope instead of its own."""

    ERROR_SCHEMA = ErrorSchema


api = Api()


# Every rate-limited operation may answer this (service/ratelimit.py).
TOO_MANY_REQUESTS: dict[str, Any] = {
    "schema": ErrorSchema,
    "description": "rate_limited (more than RATE_LIMIT requests) or "
    "too_many_concurrent_requests (MAX_CONCURRENT_REQUESTS in flight): retry after Retry-After.",
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}

# Swagger UI's files from the pinned swagger-ui-bundle package: /docs works
# without internet. OPENAPI_SWAGGER_UI_URL (service/app.py) points here, and
# OPEN_BLUEPRINTS lists the name, like flask-smorest's "api-docs".
docs_assets = FlaskBlueprint(
    "api-docs-assets",
    __name__,
    static_folder=swagger_ui_bundle.swagger_ui_path,
    static_url_path="/docs/assets",
)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest blueprint whose argument errors are 400s, and whose
    operations document the 429 of the rate limits (unless ``rate_limited``
    is false: the probes are never limited)."""

    ARGUMENTS_PARSER = _Parser()

    def __init__(self, *args: Any, rate_limited: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rate_limited = rate_limited

    def route(self, rule: str, *, parameters: Any = None, tags: Any = None, **options: Any) -> Any:
        register = super().route(rule, parameters=parameters, tags=tags, **options)
        if not self.rate_limited:
            return register
        return lambda view: register(self.alt_response(429, **TOO_MANY_REQUESTS)(view))

    def arguments(self, schema: Any, *, location: str = "json", **kwargs: Any) -> Any:
        """flask-smorest's ``arguments``; a JSON body also documents the 415
        :meth:`_Parser.load_json` answers and the 413 of :func:`read_body`."""
        parse = super().arguments(schema, location=location, **kwargs)
        if location != "json":
            return parse
        document = self.alt_response(
            415,
            schema=ErrorSchema,
            description="unsupported_media_type: the body is not sent as "
            "Content-Type: application/json.",
        )
        too_large = self.alt_response(
            413,
            schema=ErrorSchema,
            description="request_too_large: the body is over MAX_REQUEST_BYTES.",
        )
        return lambda func: too_large(document(parse(func)))


def after_response(work: Callable[[], None] | None) -> None:
    """Run ``work`` (when there is any) once the response has been sent — at
    WSGI close, inside an app context — so the client does not wait for it.

    The one place where use cases' after-response work meets Flask's request
    lifecycle; call it from a route. ``work`` must not raise.
    """
    if work is None:
        return
    # A context of the app itself (not of the proxy): the request's contexts
    # are gone by close time.
    context = current_app.app_context()

    def run() -> None:
        with context:
            work()

    @after_this_request
    def attach(response: Response) -> Response:
        response.call_on_close(run)
        return response


def read_body() -> None:
    """Read the whole request body before anything else runs (a ``before_request``
    hook registered ahead of the limits): no concurrency slot is taken for a
    client still sending one, and a body over ``MAX_REQUEST_BYTES`` is refused
    with 413 from its ``Content-Length`` before a byte of it is read. Under
    gunicorn the worker has already read it within its read deadline
    (service/gunicorn_worker.py). A request with neither ``Content-Length``
    nor ``Transfer-Encoding`` has no body (RFC 9112 §6.3): nothing to read."""
    environ = request.environ
    if "CONTENT_LENGTH" in environ or "HTTP_TRANSFER_ENCODING" in environ:
        request.get_data(cache=True)


def register_response_headers(app: Flask) -> None:
    """``X-Content-Type-Options: nosniff`` on every answer, and ``Cache-Control:
    no-store`` on user data (``/users/…`` and buy answers, errors included):
    no browser guesses a type, no shared cache keeps a user's trades."""

    @app.after_request
    def add_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if USER_DATA_PATH.match(request.path):
            response.headers["Cache-Control"] = "no-store"
        return response


def register_blueprints(app: Flask) -> None:
    from service.api import health

    app.register_blueprint(docs_assets)
    for blueprint in [health.blp, *_feature_blueprints()]:
        api.register_blueprint(blueprint)


def _feature_blueprints() -> list[Blueprint]:
    from service.api import buys, portfolios, stocks, transactions

    return [stocks.blp, buys.blp, portfolios.blp, transactions.blp]
