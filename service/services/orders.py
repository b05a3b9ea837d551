"""The vendor order protocol of a buy: one order, sent again only while the
vendor cannot have executed it, never after its deadline, every send counted.

An attempt's end is an :class:`Outcome`, the values its ledger row gets;
:func:`failure` classifies a vendor error into one (``failed`` when nothing
can have been bought, ``unknown`` when the order may have been executed).
"""

from __future__ import annotations

import time
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
    attempts: int = 0

    def ledger_values(self, now: datetime) -> dict[str, Any]:
        """The ledger row's columns for this outcome, completed at ``now``."""
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


class Order:
    """One order, sent again after ``VENDOR_RETRY_DELAYS`` only while that is safe."""

    def __init__(self, symbol: str, price: Decimal, quantity: int, deadline: float) -> None:
        self.symbol = symbol
        self.price = price
        self.quantity = quantity
        self.deadline = deadline  # time.monotonic() after which nothing is sent
        self.attempts = 0  # calls that got past the circuit breaker

    def place(self) -> VendorOrder:
        """The executed order.

        :raises VendorError: the last attempt's error.
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
        outcome = "ok"
        try:
            return vendor_client().place_order(self.symbol, self.price, self.quantity)
        except VendorError as exc:
            outcome = exc.code
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
