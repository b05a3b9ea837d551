"""Domain errors and the one place that turns any error into the JSON envelope.

Services raise :class:`ServiceError` subclasses (never ``abort()``); the
handlers registered by :func:`register_error_handlers` render every error as
``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5


class ServiceError(Exception):
    """An error with an HTTP status and a machine-readable ``code``."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = dict(details or {})
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def http_status(self) -> int:
        return self.status


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_request"
    default_message = "The request is not valid."


class Conflict(ServiceError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with one in progress."


class AlreadyRunning(Conflict):
    """A job that must run alone found another run holding its lock."""

    code = "already_running"
    default_message = "Another run of this job is in progress."


class Unprocessable(ServiceError):
    status = 422
    code = "unprocessable"
    default_message = "The request cannot be processed."


class PriceOutOfTolerance(Unprocessable):
    """A buy price lies outside the tolerance band around the market price."""

    code = "price_out_of_tolerance"
    default_message = "The price is too far from the market price."


class IdempotencyKeyReused(Unprocessable):
    """An ``Idempotency-Key`` came back with a different request body."""

    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used for a different request."


class IdempotencyKeyInUse(Conflict):
    """The first request with this ``Idempotency-Key`` has not finished yet."""

    code = "idempotency_key_in_use"
    default_message = "A request with this Idempotency-Key is still being processed."


class ServiceUnavailable(ServiceError):
    status = 503
    code = "unavailable"
    default_message = "The service is temporarily unavailable."


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL could not be reached: nothing was recorded, retrying is safe."""

    code = "database_unavailable"
    default_message = "The ledger database is unavailable; nothing was recorded. Try again shortly."


class OutcomeNotRecorded(ServiceUnavailable):
    """A buy reached the vendor but its outcome could not be written to the ledger.

    The attempt stays ``pending`` until it is finalised as ``unknown``;
    retrying with the same ``Idempotency-Key`` never sends a second order.
    """

    code = "outcome_not_recorded"
    default_message = (
        "The order's outcome could not be recorded; retry with the same Idempotency-Key "
        "to learn it (no second order is sent)."
    )


class RateLimited(ServiceError):
    """More requests than ``RATE_LIMIT`` allows in the moving window."""

    status = 429
    code = "rate_limited"
    default_message = "Too many requests; retry after the time in Retry-After."


class TooManyConcurrentRequests(ServiceError):
    """``MAX_CONCURRENT_REQUESTS`` requests are already in flight."""

    status = 429
    code = "too_many_concurrent_requests"
    default_message = "Too many requests in flight; retry after the time in Retry-After."


# --- vendor -----------------------------------------------------------------


class VendorError(ServiceError):
    """The vendor did not do what was asked.

    ``retriable``: repeating an order is safe and may help (5xx, or never sent);
    ``transient``: a read (which is always safe to repeat) may succeed later;
    ``request_sent``: the vendor may have acted on the request.
    """

    status = 502
    code = "vendor_error"
    default_message = "The market vendor failed."
    retriable: ClassVar[bool] = False
    transient: ClassVar[bool] = False
    request_sent: ClassVar[bool] = True

    def __init__(
        self,
        message: str | None = None,
        *,
        vendor_status: int | None = None,
        details: Mapping[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.vendor_status = vendor_status
        super().__init__(message, details=details, retry_after=retry_after)


class VendorRejected(VendorError):
    """The vendor answered 4xx: the request itself was refused; never retried."""

    status = 400
    code = "vendor_rejected"
    default_message = "The vendor rejected the request."

    @property
    def http_status(self) -> int:
        return self.vendor_status or self.status


class UnknownSymbol(VendorRejected):
    """The vendor does not list the symbol (its 404, or absent from its catalogue)."""

    status = 404
    code = "unknown_symbol"
    default_message = "No such stock."


class VendorServerError(VendorError):
    """The vendor answered 5xx without acting on the request."""

    code = "vendor_server_error"
    default_message = "The market vendor had an internal error."
    retriable = True
    transient = True


class VendorGatewayError(VendorError):
    """A gateway in front of the vendor answered 502 or 504: the vendor itself
    may have received and executed the request. Reads may be repeated; an
    order's outcome is unknown and it is never resent."""

    code = "vendor_gateway_error"
    default_message = "A gateway in front of the market vendor failed."
    transient = True


class OrderDeadlinePassed(VendorError):
    """The buy ran out of time before its order was sent: nothing was sent, and
    nothing will be, so the attempt may be finalised without a race."""

    status = 504
    code = "deadline_passed"
    default_message = "The market vendor was too slow; nothing was bought."
    request_sent = False


class VendorUnreachable(VendorError):
    """No connection could be made: the request never left."""

    status = 503
    code = "vendor_unreachable"
    default_message = "The market vendor cannot be reached."
    retriable = True
    transient = True
    request_sent = False


class VendorTimeout(VendorError):
    """The request was sent but no answer came in time."""

    status = 504
    code = "vendor_timeout"
    default_message = "The market vendor did not answer in time."
    transient = True


class VendorAnswerLost(VendorError):
    """The connection broke after the request was sent."""

    code = "vendor_answer_lost"
    default_message = "The connection to the market vendor broke before it answered."
    transient = True


class VendorUnavailable(VendorError):
    """The vendor could not serve the request even after retries; nothing was executed."""

    code = "vendor_unavailable"
    default_message = "The market vendor is unavailable; nothing was bought."


class OrderOutcomeUnknown(VendorError):
    """An order was sent but its answer never came: it may have been executed.

    Never resent; the attempt is recorded as ``unknown`` and reported.
    """

    code = "order_outcome_unknown"
    default_message = (
        "The order was sent but the market vendor's answer was lost; it may have been "
        "executed. It is recorded and will be reconciled; do not simply buy again."
    )


class VendorBadResponse(VendorError):
    code = "vendor_bad_response"
    default_message = "The market vendor sent an answer that could not be read."


class CircuitOpen(VendorError):
    """Recent vendor failures opened the circuit; no call was made."""

    status = 503
    code = "circuit_open"
    default_message = "The market vendor is failing; try again shortly."
    request_sent = False


# --- reports ----------------------------------------------------------------


class ReportDayNotClosed(InvalidInput):
    """The report day has not ended yet (today or in the future)."""

    code = "report_day_not_closed"
    default_message = "Only a day that has ended (UTC) can be reported."


class MailDeliveryFailed(ServiceError):
    """The mail server (or the outbox) did not take the message."""

    status = 502
    code = "mail_delivery_failed"
    default_message = "The message could not be delivered."


# --- rendering --------------------------------------------------------------


def error_response(
    status: int,
    code: str,
    message: str,
    details: Mapping[str, Any] | None = None,
    retry_after: int | None = None,
) -> Response:
    """Build the JSON error envelope."""
    response = jsonify(
        {"error": {"code": code, "message": message, "details": dict(details or {})}}
    )
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, retry_after))
    return response


def _http_code(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_").replace("'", "")


def handle_service_error(exc: ServiceError) -> Response:
    return error_response(exc.http_status, exc.code, exc.message, exc.details, exc.retry_after)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None)
    if isinstance(data, Mapping) and "messages" in data:
        # webargs/marshmallow validation: name every bad field.
        messages = data["messages"]
        fields = next(iter(messages.values())) if len(messages) == 1 else messages
        return error_response(
            400, "invalid_request", "The request is not valid.", {"fields": fields}
        )
    response = error_response(status, _http_code(exc), exc.description or exc.name)
    if status == 405 and exc.get_response().headers.get("Allow"):
        response.headers["Allow"] = exc.get_response().headers["Allow"]
    return response


def handle_database_down(exc: SQLAlchemyError) -> Response:
    log.warning("database unavailable", extra={"error": type(exc).__name__})
    return handle_service_error(DatabaseUnavailable(retry_after=DATABASE_RETRY_AFTER_SECONDS))


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error", extra={"request_id": g.get("request_id")})
    return error_response(500, "internal_error", "Internal server error.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    # Connection-level failures only: a constraint or programming error stays a 500.
    app.register_error_handler(OperationalError, handle_database_down)
    app.register_error_handler(InterfaceError, handle_database_down)
    app.register_error_handler(Exception, handle_unexpected)
