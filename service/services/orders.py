"""The vendor order protocol of a buy: one order, sent again only while the
vendor cannot have executed it, never after its deadline, every send counted
in the ledger before it leaves (no count, no order).

An attempt's end is an :class:`Outcome`, the values its ledger row gets;
:func:`failure` classifies a vendor error into one (``failed`` when nothing
can have been bought, ``unknown`` when the order may have been executed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from service.config import current_settings
from service.metrics import BUY_VENDOR_ATTEMPTS
from service.models import TransactionStatus
from service.vendorapi.client import VendorOrder, vendor_client
from service.vendorapi.errors import (
    CircuitOpen,
    OrderDeadlinePassed,
    UnknownSymbol,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)

VENDOR_MESSAGE_MAX_LENGTH = 1000
# A ``pending`` attempt older than this belongs to a worker that died or could
# not write its outcome. A live buy never sends an order after half of it
# (ORDER_DEADLINE_SECONDS), so finalising such a row can never race an order.
ABANDONED_AFTER = timedelta(minutes=5)
ORDER_DEADLINE_SECONDS = ABANDONED_AFTER.total_seconds() / 2


def order_deadline() -> float:
    """The ``time.monotonic()`` after which an attempt claimed now sends no order."""
    return time.monotonic() + ORDER_DEADLINE_SECONDS


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as it goes into the ledger."""

    status: TransactionStatus
    reason: str | None = None
    market_price: Decimal | None = None
    order: VendorOrder | None = None
    vendor_status: int | None = None
    vendor_message: str | None = None
    # Orders that got past the circuit breaker; None: as counted in the ledger
    # before each send (when the outcome does not know, e.g. a crashed worker).
    attempts: int | None = None

    def ledger_values(self, now: datetime) -> dict[str, Any]:
        """The ledger row's columns for this outcome, completed at ``now``; the
        row's own market price and count of orders stand where this says none."""
        return {
            "status": self.status.value,
            "reason": self.reason,
            "market_price": self.market_price,
            "executed_price": self.order.price if self.order else None,
            "total": self.order.total if self.order else None,
            "vendor_status": self.vendor_status,
            "vendor_message": self.vendor_message,
            "attempts": self.attempts,
            "completed_at": now,
        }

    def as_json(self) -> dict[str, Any]:
        """The outcome as JSON values (money as decimal strings), to keep it
        outside the ledger; :meth:`from_json` reads it back."""
        order = self.order
        return {
            "status": self.status.value,
            "reason": self.reason,
            "market_price": _text(self.market_price),
            "order": None
            if order is None
            else [order.symbol, order.quantity, str(order.price), str(order.total)],
            "vendor_status": self.vendor_status,
            "vendor_message": self.vendor_message,
            "attempts": self.attempts,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        """The outcome :meth:`as_json` wrote."""
        order = data["order"]
        return cls(
            TransactionStatus(data["status"]),
            data["reason"],
            market_price=None if data["market_price"] is None else Decimal(data["market_price"]),
            order=None
            if order is None
            else VendorOrder(order[0], order[1], Decimal(order[2]), Decimal(order[3])),
            vendor_status=data["vendor_status"],
            vendor_message=data["vendor_message"],
            attempts=data["attempts"],
        )


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


class OrderNotCounted(Exception):
    """The ledger could not count the next order (or the attempt was finalised
    meanwhile), so it was not sent."""


class Order:
    """One order, sent again after ``VENDOR_RETRY_DELAYS`` only while that is safe.

    ``count`` is called before every send (but the first when
    ``first_counted``: the ledger counted it already): it counts the order in
    the ledger (committed), so that a worker killed mid-order leaves a row
    that says an order may exist; it raises :class:`OrderNotCounted` to stop
    the send.
    """

    def __init__(
        self,
        symbol: str,
        price: Decimal,
        quantity: int,
        deadline: float,
        count: Callable[[], None],
        *,
        first_counted: bool = False,
    ) -> None:
        self.symbol = symbol
        self.price = price
        self.quantity = quantity
        self.deadline = deadline  # time.monotonic() after which nothing is sent
        self.count = count
        self._uncounted = not first_counted  # the next send must be counted first
        self.attempts = 0  # calls that got past the circuit breaker
        self.last_error: VendorError | None = None  # of the latest call, if it failed

    def place(self) -> VendorOrder:
        """The executed order.

        :raises VendorError: the last attempt's error;
        :raises OrderNotCounted: the next order could not be counted, so it was
            not sent (``last_error`` holds the previous one's error, if any).
        """
        delays = current_settings().vendor_retry_delays

        def wait(state: RetryCallState) -> float:
            # tenacity asks for the wait before it checks the stop condition
            return delays[state.attempt_number - 1] if state.attempt_number <= len(delays) else 0

        retrying = Retrying(
            # 5xx or never sent: the vendor executed nothing. A lost answer, a
            # timeout or a 4xx is final; an open circuit fails at once.
            retry=retry_if_exception(lambda exc: isinstance(exc, VendorError) and exc.retriable),
            stop=stop_after_attempt(len(delays) + 1),
            wait=wait,
            reraise=True,
        )
        return retrying(self._attempt)

    def _attempt(self) -> VendorOrder:
        if time.monotonic() > self.deadline:
            raise OrderDeadlinePassed()
        if self._uncounted:
            self.count()
        self._uncounted = True
        outcome = "ok"
        try:
            return vendor_client().place_order(self.symbol, self.price, self.quantity)
        except VendorError as exc:
            outcome = exc.code
            self.last_error = exc
            raise
        finally:
            if outcome != CircuitOpen.code:
                self.attempts += 1
                BUY_VENDOR_ATTEMPTS.labels(outcome).inc()


def failure(exc: VendorError, *, order_sent: bool) -> Outcome:
    """The final status and reason of an attempt the vendor failed.

    ``order_sent``: the error came from placing the order (else from the price look-up).
    """
    if isinstance(exc, UnknownSymbol | CircuitOpen | OrderDeadlinePassed) or (
        order_sent and isinstance(exc, VendorRejected)
    ):
        status, reason = TransactionStatus.FAILED, exc.code
    elif order_sent and exc.request_sent and not exc.retriable:
        status, reason = TransactionStatus.UNKNOWN, exc.code  # timeout, lost answer …
    else:
        status, reason = TransactionStatus.FAILED, VendorUnavailable.code
    return Outcome(
        status,
        reason,
        vendor_status=exc.vendor_status,
        vendor_message=exc.message[:VENDOR_MESSAGE_MAX_LENGTH],
    )
