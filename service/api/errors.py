"""The one place that turns an error into an HTTP answer.

Every error is the JSON envelope ``{"error": {"code", "message", "details"}}``.
:data:`STATUSES` maps each domain error class (the nearest listed ancestor
wins) to its HTTP status; a vendor 4xx keeps the vendor's own status.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from service.errors import (
    Conflict,
    DatabaseUnavailable,
    Forbidden,
    IdentityProviderUnavailable,
    InvalidCredentials,
    InvalidInput,
    MailDeliveryFailed,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    TooManyConcurrentRequests,
    TransactionNotFound,
    Unauthenticated,
    Unprocessable,
    VendorFailure,
)

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5

STATUSES: dict[type[ServiceError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    TransactionNotFound: 404,
    Conflict: 409,
    Unprocessable: 422,
    RateLimited: 429,
    TooManyConcurrentRequests: 429,
    ServiceUnavailable: 503,
    IdentityProviderUnavailable: 503,
    MailDeliveryFailed: 502,
    VendorFailure: 502,
}
# Vendor failures by their code (the vendor's taxonomy is not the API's business).
VENDOR_STATUSES: dict[str, int] = {
    "vendor_rejected": 400,  # or the vendor's own 4xx, passed on
    "unknown_symbol": 404,
    "circuit_open": 503,
    "vendor_unreachable": 503,
    "vendor_timeout": 504,
    "deadline_passed": 504,
}
_PASSED_ON = frozenset({"vendor_rejected", "unknown_symbol"})
# RFC 6750 §3: a bare challenge when no token came, ``invalid_token`` when one did.
BEARER_CHALLENGE = "Bearer"
INVALID_TOKEN_CHALLENGE = 'Bearer error="invalid_token"'


def status_of(exc: ServiceError) -> int:
    """The HTTP status of ``exc``: a vendor 4xx is passed on as the vendor sent it."""
    if isinstance(exc, VendorFailure):
        if exc.code in _PASSED_ON and exc.vendor_status:
            return exc.vendor_status
        if exc.code in VENDOR_STATUSES:
            return VENDOR_STATUSES[exc.code]
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return STATUSES[cls]
    return 500


def envelope(code: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON error envelope, also written by the gunicorn worker (service/gunicorn_worker.py)."""
    return {"error": {"code": code, "message": message, "details": dict(details or {})}}


def code_of(reason: str) -> str:
    """An error code from an HTTP reason phrase: ``URI Too Long`` -> ``uri_too_long``."""
    return reason.lower().replace(" ", "_").replace("'", "")


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    retry_after: int | None = None,
) -> Response:
    """Build the JSON error envelope."""
    response = jsonify(envelope(code, message, details))
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def handle_service_error(exc: ServiceError) -> Response:
    response = error_response(status_of(exc), exc.code, exc.message, exc.details, exc.retry_after)
    if isinstance(exc, Unauthenticated):
        response.headers["WWW-Authenticate"] = (
            INVALID_TOKEN_CHALLENGE if isinstance(exc, InvalidCredentials) else BEARER_CHALLENGE
        )
    return response


def _http_code(exc: HTTPException) -> str:
    return code_of(exc.name or "error")


# marshmallow's wording, as a client should read it.
PLAIN_MESSAGES = {
    "Missing data for required field.": "This field is required.",
    "Field may not be null.": "This field must not be null.",
    "Invalid input type.": "The request body must be a JSON object.",
}
_WHOLE_INPUT = "_schema"  # marshmallow's key for an error about the input as a whole


def _plain(messages: list[str]) -> list[str]:
    return [PLAIN_MESSAGES.get(message, message) for message in messages]


def _collect(fields: dict[str, list[str]], name: str, found: Any) -> None:
    """Add ``found`` (a list of messages, or a nested field's own mapping) to
    ``fields``, naming nested fields ``outer.inner``."""
    if isinstance(found, Mapping):
        for inner, messages in found.items():
            _collect(fields, f"{name}.{inner}", messages)
    else:
        fields.setdefault(name, []).extend(_plain(list(found)))


def invalid_input_response(messages: Mapping[str, Mapping[str, Any]]) -> Response:
    """The 400 for webargs' ``{location: {field: [message, …]}}``: ``details.fields``
    is one object field → messages across all locations; an error about the
    input as a whole (a JSON body that is not an object) becomes the message."""
    fields: dict[str, list[str]] = {}
    whole: list[str] = []
    for errors in messages.values():
        for name, found in errors.items():
            if name == _WHOLE_INPUT:
                whole.extend(_plain(list(found)))
            else:
                _collect(fields, name, found)
    message = " ".join(whole) or "The request is not valid."
    return error_response(400, "invalid_request", message, {"fields": fields})


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None)
    if isinstance(data, Mapping) and "messages" in data:
        return invalid_input_response(data["messages"])  # webargs/marshmallow validation
    response = error_response(status, _http_code(exc), exc.description or exc.name)
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def handle_too_large(_exc: RequestEntityTooLarge) -> Response:
    """413 for a body over ``MAX_REQUEST_BYTES`` (Flask's ``MAX_CONTENT_LENGTH``),
    raised before the body is read when ``Content-Length`` declares it."""
    limit = request.max_content_length
    return error_response(
        413,
        "request_too_large",
        f"The request body is larger than the limit of {limit} bytes.",
        {"limit": limit},
    )


def handle_database_down(exc: SQLAlchemyError) -> Response:
    log.warning("database unavailable", extra={"error": type(exc).__name__})
    return handle_service_error(DatabaseUnavailable(retry_after=DATABASE_RETRY_AFTER_SECONDS))


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": g.get("request_id")})
    return error_response(500, "internal_error", "Internal server error.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(RequestEntityTooLarge, handle_too_large)
    # Connection-level failures only: a constraint or programming error stays a 500.
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(InterfaceError, handle_database_down)
    app.register_error_handler(Exception, handle_unexpected)
