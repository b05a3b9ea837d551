"""The vendor's error taxonomy: what a failed call to the market vendor means.

The question "may this be sent again?" is data on the error, not scattered
``if``s: ``retriable`` (repeating an order is safe and may help: a 5xx, or a
request that never left), ``transient`` (a read, always safe to repeat, may
succeed later) and ``request_sent`` (the vendor may have acted on it).
``vendor_status`` is the vendor's HTTP status when it answered.
"""

from __future__ import annotations

from typing import ClassVar

from service.errors import VendorFailure


class VendorError(VendorFailure):
    """The vendor did not do what was asked.

    ``retriable``: repeating an order is safe and may help (5xx, or never sent);
    ``transient``: a read (which is always safe to repeat) may succeed later;
    ``request_sent``: the vendor may have acted on the request.
    """

    retriable: ClassVar[bool] = False
    transient: ClassVar[bool] = False
    request_sent: ClassVar[bool] = True


class VendorRejected(VendorError):
    """The vendor answered 4xx: the request itself was refused; never retried."""

    code = "vendor_rejected"
    default_message = "The vendor rejected the request."


class UnknownSymbol(VendorRejected):
    """The vendor does not list the symbol (its 404, or absent from its catalogue)."""

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

    code = "deadline_passed"
    default_message = "The market vendor was too slow; nothing was bought."
    request_sent = False


class VendorUnreachable(VendorError):
    """No connection could be made: the request never left."""

    code = "vendor_unreachable"
    default_message = "The market vendor cannot be reached."
    retriable = True
    transient = True
    request_sent = False


class VendorTimeout(VendorError):
    """The request was sent but no answer came in time."""

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

    code = "circuit_open"
    default_message = "The market vendor is failing; try again shortly."
    request_sent = False
