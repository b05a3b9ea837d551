"""Domain errors: what went wrong, in the service's own terms.

Services raise :class:`ServiceError` subclasses (never ``abort()``). An error
carries a machine-readable ``code``, a message for people, ``details`` and,
where waiting helps, ``retry_after`` seconds. It knows nothing of HTTP:
:mod:`service.api.errors` is the one place that maps each class to a status
and the JSON envelope; the jobs turn them into exit codes and one-line messages.
:class:`VendorFailure` is the market vendor failing or refusing; its
taxonomy (may it be resent?) lives in :mod:`service.vendorapi.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class ServiceError(Exception):
    """An error with a machine-readable ``code`` and a message for people."""

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


class InvalidInput(ServiceError):
    """The request itself is malformed (``details.fields`` names what)."""

    code = "invalid_request"
    default_message = "The request is not valid."


class InvalidToken(InvalidInput):
    """A ``nextToken`` this service did not sign for this listing (forged,
    altered, or issued for another one)."""

    code = "invalid_token"
    default_message = "Not a token this service issued."


class Conflict(ServiceError):
    """The request collides with another one still running."""

    code = "conflict"
    default_message = "The request conflicts with one in progress."


class AlreadyRunning(Conflict):
    """A job that must run alone found another run holding its lock."""

    code = "already_running"
    default_message = "Another run of this job is in progress."


class TransactionNotFound(ServiceError):
    """No such transaction (for this user): the same answer whether it exists or not."""

    code = "transaction_not_found"
    default_message = "No such transaction."


class ResolutionConflict(Conflict):
    """An attempt cannot be resolved that way: it is not ``unknown``, or it
    was already resolved with another outcome (``details`` says which)."""

    code = "resolution_conflict"
    default_message = "The transaction cannot be resolved that way."


class Unprocessable(ServiceError):
    """A well-formed request that the rules of the market refuse."""

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
    """A dependency is down; the same request may succeed later."""

    code = "unavailable"
    default_message = "The service is temporarily unavailable."


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL could not be reached: nothing was recorded, retrying is safe."""

    code = "database_unavailable"
    default_message = "The ledger database is unavailable; nothing was recorded. Try again shortly."


class OutcomeNotRecorded(ServiceUnavailable):
    """A buy's outcome could not be written to the ledger.

    The outcome is kept and applied once PostgreSQL answers (by a retry with
    the same ``Idempotency-Key``, which never sends a second order, or by the
    sweep); until then the attempt stays ``pending``.
    """

    code = "outcome_not_recorded"
    default_message = (
        "The order's outcome could not be recorded; retry with the same Idempotency-Key "
        "to learn it (no second order is sent)."
    )


class OrderNotSent(ServiceUnavailable):
    """A buy attempt ended before any order was sent (the ledger could not
    count it first, or the worker died first): nothing was bought, the attempt
    is over, and a new request may be sent (no ``retry_after``: waiting does
    not change this attempt)."""

    code = "order_not_sent"
    default_message = (
        "Nothing was bought: this attempt ended before its order could be placed, and it "
        "is over. Send a new request to try again."
    )


class RateLimited(ServiceError):
    """More requests than ``RATE_LIMIT`` allows in the moving window."""

    code = "rate_limited"
    default_message = "Too many requests; retry after the time in Retry-After."


class TooManyConcurrentRequests(ServiceError):
    """``MAX_CONCURRENT_REQUESTS`` requests are already in flight."""

    code = "too_many_concurrent_requests"
    default_message = "Too many requests in flight; retry after the time in Retry-After."


class ReportDayNotClosed(InvalidInput):
    """The report day has not ended yet (today or in the future)."""

    code = "report_day_not_closed"
    default_message = "Only a day that has ended (UTC) can be reported."


class MailDeliveryFailed(ServiceError):
    """The mail server (or the outbox) did not take the message."""

    code = "mail_delivery_failed"
    default_message = "The message could not be delivered."


class VendorFailure(ServiceError):
    """The market vendor failed or refused; ``vendor_status`` is its HTTP
    status when it answered. The subclasses in :mod:`service.vendorapi.errors`
    say what may be sent again."""

    code = "vendor_error"
    default_message = "The market vendor failed."

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


class Unauthenticated(ServiceError):
    """The request carries no bearer token where one is required."""

    code = "unauthenticated"
    # The same words for every failure: which check failed would help a forger.
    default_message = "A valid bearer token is required."


class InvalidCredentials(Unauthenticated):
    """The bearer token is malformed, expired, forged, for another issuer or
    audience, or signed by an unknown key (one code: no hint for forgers)."""


class Forbidden(ServiceError):
    """The authenticated user asked to act for another user."""

    code = "forbidden"
    default_message = "The token's user may not act for this userId."


class IdentityProviderUnavailable(ServiceUnavailable):
    """The identity provider's key set could not be fetched and the token's
    key is not cached: the token can be neither accepted nor refused."""

    code = "identity_provider_unavailable"
    default_message = "The identity provider's keys cannot be fetched; try again shortly."
