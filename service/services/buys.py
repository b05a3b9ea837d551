"""Buying stocks (``POST /stocks/{symbol}/buy``, DESIGN §4): a ledger that loses
nothing and never buys twice.

A buy runs in three steps, and only the middle one talks to the vendor:

1. *claim* — the attempt is inserted as ``pending`` and committed before anything
   else (only a cached quote is read first). With an ``Idempotency-Key`` the
   unique ``(user_id, idempotency_key)`` constraint lets exactly one of
   concurrent requests claim it; the others get the first answer replayed, or
   409 (still running) / 422 (other body).
2. *trade* — market price, tolerance check, order; no database transaction is
   open meanwhile, except that each order is counted in the ledger
   (``attempts``, committed) before it is sent: if that write fails, nothing
   is sent. When the cached quote is fresh enough to trade on and the price
   is within its band, the order goes out at once and the claim counted it
   (one write less); the deadline still stops it. An order is sent again
   only when the vendor cannot have executed it (a 5xx, or a request that
   never left); one whose answer was lost ends ``unknown`` and is never
   resent.
3. *finish* — :func:`service.services.outcomes.settle` moves the row from
   ``pending`` to its final status in one database transaction, with the
   day's summary and, on success, the holding. If PostgreSQL is away just
   then, the outcome is kept (Redis) and applied when it answers again: by
   this request while it can wait, by a retry with the same key, or by the
   sweep.

The HTTP answer is derived from the final row by :func:`result_of`, which also
answers replays, so a replay answers as the first request did (except that a
replayed circuit-open failure no longer asks the client to wait and retry).
The vendor order itself (retries, deadline, attempts) is
:mod:`service.services.orders`. A worker killed between steps 1 and 3 leaves a
``pending`` row behind; :mod:`service.services.sweep` ends such rows as
``failed`` when no order was counted, else ``unknown``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from service.cache import read_ahead
from service.config import current_settings
from service.errors import (
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    OrderNotSent,
    OutcomeNotRecorded,
    PriceOutOfTolerance,
    ServiceError,
)
from service.extensions import autocommit, db
from service.marketdata.codec import Quote
from service.marketdata.store import quote_key
from service.metrics import PRICE_CHECK_REJECTIONS
from service.models import Transaction, TransactionStatus
from service.models.base import utcnow
from service.money import money_text, price_band
from service.repositories import transactions
from service.services import outcomes, portfolios, sweep
from service.services.orders import (
    ABANDONED_AFTER,
    Order,
    OrderNotCounted,
    Outcome,
    failure,
    order_deadline,
)
from service.services.stocks import cached_price, vendor_price
from service.vendorapi.client import vendor_client
from service.vendorapi.errors import (
    CircuitOpen,
    OrderOutcomeUnknown,
    UnknownSymbol,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)

log = logging.getLogger(__name__)

PRICE_OUT_OF_TOLERANCE = "price_out_of_tolerance"
INTERNAL_ERROR = "internal_error"  # an unexpected error while trading
VENDOR_ORDER_MISMATCH = "vendor_order_mismatch"  # executed, but not the order sent
# The ledger could not count the order before it was sent, so none was.
LEDGER_UNAVAILABLE = "ledger_unavailable"
_RETRY_PENDING_SECONDS = 1
_CIRCUIT_OPEN_REPLAYED = (
    "This attempt failed while the vendor's circuit was open; it is over. "
    "Send a new request to try again."
)
# Vendor 4xx answers that blame the service's own credentials, not the buyer's request.
_CREDENTIAL_STATUSES = (401, 403)


def buy(
    *,
    user_id: str,
    symbol: str,
    price: Decimal,
    quantity: int,
    idempotency_key: str | None = None,
) -> Transaction:
    """Buy ``quantity`` shares of ``symbol`` for ``user_id`` at ``price``.

    Every call that claims an attempt leaves exactly one ledger row with a
    final status; a repeated ``idempotency_key`` claims nothing and sends no
    order.

    :returns: the succeeded transaction (or the replayed one).
    :raises IdempotencyKeyReused: the key was used before with another body;
    :raises IdempotencyKeyInUse: the key's first request has not finished;
    :raises ServiceError: the attempt's final status when it did not succeed,
        as :func:`result_of` describes it.
    """
    fingerprint = request_fingerprint(user_id, symbol, price, quantity)
    # The quote, and the circuit's state that the order reads first: one round trip.
    read_ahead([quote_key(symbol), *vendor_client().circuit.state_keys])
    cached = cached_price(symbol)
    claimed: dict[str, Any] = {
        "user_id": user_id,
        "symbol": symbol,
        "quantity": quantity,
        "requested_price": price,
        "idempotency_key": idempotency_key,
        "request_fingerprint": fingerprint,
    }
    if cached is not None and _within_band(price, cached.price):
        # The order will go out at once: the claim counts it (no second write).
        claimed.update(attempts=1, market_price=cached.price)
    with autocommit() as connection:  # committed as it is inserted
        transaction_id = transactions.claim(connection, claimed)
    if transaction_id is None:
        assert idempotency_key is not None  # only a repeated key stops a claim
        return result_of(_earlier_attempt(user_id, idempotency_key, fingerprint), replayed=True)
    try:
        outcome = _trade(transaction_id, symbol, price, quantity, cached)
    except Exception:
        # The order may have been sent: record that we cannot tell.
        log.exception("buy failed unexpectedly", extra={"transaction_id": transaction_id})
        outcome = Outcome(TransactionStatus.UNKNOWN, INTERNAL_ERROR)
    try:
        finished = outcomes.settle(transaction_id, outcome)
    except SQLAlchemyError as exc:
        # Kept for the sweep (or a retry with the key) to apply once the
        # ledger answers; the row stays pending until then.
        log.exception(
            "buy outcome not recorded",
            extra={"transaction_id": transaction_id, "outcome": repr(outcome)},
        )
        if outcome.order is not None:
            portfolios.invalidate(user_id)  # in case the commit did land
        raise _not_recorded(transaction_id, idempotency_key) from exc
    return result_of(finished)


def _not_recorded(transaction_id: int, idempotency_key: str | None) -> OutcomeNotRecorded:
    """The 503 of an outcome kept but not yet in the ledger. It invites a retry
    (``Retry-After``) only with a key: without one, a retry is a new order."""
    details = {"transactionId": transaction_id}
    if idempotency_key:
        return OutcomeNotRecorded(details=details, retry_after=_RETRY_PENDING_SECONDS)
    return OutcomeNotRecorded(
        f"The order's outcome could not be recorded yet; do not resend (the order may "
        f"have executed): look up transaction {transaction_id} later.",
        details=details,
    )


def result_of(transaction: Transaction, *, replayed: bool = False) -> Transaction:
    """The answer to the buy recorded as ``transaction`` (a final row);
    ``replayed``: to a later request with its ``Idempotency-Key``.

    :returns: ``transaction`` when it succeeded;
    :raises PriceOutOfTolerance: ``rejected`` (422, market price and band in details);
    :raises UnknownSymbol: ``failed``, the vendor does not list the symbol (404);
    :raises VendorRejected: ``failed``, the vendor refused the order (its 4xx and message);
    :raises VendorUnavailable: ``failed``, the vendor failed even after retries (502);
    :raises CircuitOpen: ``failed``, the circuit was open (503; with ``Retry-After``
        when it happened now, without it when replayed: that attempt is over);
    :raises OrderNotSent: ``failed`` before any order could be sent (the
        ledger could not count it, or the worker died first) (503);
    :raises OrderOutcomeUnknown: ``unknown``, the order may have been executed (502).
    """
    if transaction.status == TransactionStatus.SUCCEEDED:
        return transaction
    raise _error_of(transaction, replayed)


def request_fingerprint(user_id: str, symbol: str, price: Decimal, quantity: int) -> str:
    """SHA-256 of the canonical request: equal for equal requests however the
    price was written (``98.5``, ``"98.50"``)."""
    canonical = json.dumps(
        {
            "userId": user_id,
            "symbol": symbol,
            "price": format(price.normalize(), "f"),
            "quantity": quantity,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- the steps ----------------------------------------------------------------


def _earlier_attempt(user_id: str, idempotency_key: str, fingerprint: str) -> Transaction:
    earlier = transactions.by_idempotency_key(db.session(), user_id, idempotency_key)
    if earlier.request_fingerprint != fingerprint:
        raise IdempotencyKeyReused(details=_attempt_details(earlier))
    if earlier.status == TransactionStatus.PENDING and outcomes.apply_kept(earlier.id):
        # The vendor answered while the ledger was away: answer with that now.
        earlier = transactions.by_idempotency_key(db.session(), user_id, idempotency_key)
    if earlier.status == TransactionStatus.PENDING and earlier.created_at < (
        utcnow() - ABANDONED_AFTER
    ):
        # Its worker died or could not record the outcome: end it now rather
        # than answering 409 until the next sweep.
        sweep.finalise_abandoned()
        earlier = transactions.by_idempotency_key(db.session(), user_id, idempotency_key)
    if earlier.status == TransactionStatus.PENDING:
        raise IdempotencyKeyInUse(
            details=_attempt_details(earlier), retry_after=_RETRY_PENDING_SECONDS
        )
    return earlier


def _attempt_details(transaction: Transaction) -> dict[str, Any]:
    """What every buy error's ``details`` says of the attempt it is about."""
    return {
        "transactionId": transaction.id,
        "status": transaction.status,
        "reason": transaction.reason,
    }


def _trade(
    transaction_id: int, symbol: str, price: Decimal, quantity: int, cached: Quote | None
) -> Outcome:
    """Check the price against the market (the ``cached`` quote, else the
    vendor's) and place the order; the database is only used, and committed
    at once, to count each order before it is sent (the claim counted the
    first one when the cached quote let it through)."""
    deadline = order_deadline()
    try:
        quote = cached or vendor_price(symbol)
    except VendorError as exc:
        return failure(exc, order_sent=False)
    if not _within_band(price, quote.price):
        PRICE_CHECK_REJECTIONS.inc()
        return Outcome(TransactionStatus.REJECTED, PRICE_OUT_OF_TOLERANCE, market_price=quote.price)
    order = Order(
        symbol,
        price,
        quantity,
        deadline,
        count=lambda: _count_order(transaction_id, quote.price),
        first_counted=cached is not None,
    )
    try:
        placed = order.place()
    except OrderNotCounted:
        return Outcome(
            TransactionStatus.FAILED,
            LEDGER_UNAVAILABLE,
            market_price=quote.price,
            attempts=order.attempts,
        )
    except VendorError as exc:
        failed = failure(exc, order_sent=True)
        return replace(failed, market_price=quote.price, attempts=order.attempts)
    if (placed.symbol, placed.quantity) != (symbol, quantity):
        # Something was executed, but not what was asked: credit nothing and
        # leave it to reconciliation rather than guess a holding.
        return Outcome(
            TransactionStatus.UNKNOWN,
            VENDOR_ORDER_MISMATCH,
            market_price=quote.price,
            vendor_status=200,
            vendor_message=f"vendor executed {placed.quantity} {placed.symbol} at {placed.price}",
            attempts=order.attempts,
        )
    return Outcome(
        TransactionStatus.SUCCEEDED,
        market_price=quote.price,
        order=placed,
        vendor_status=200,
        attempts=order.attempts,
    )


def _within_band(price: Decimal, market_price: Decimal) -> bool:
    """Whether ``price`` is within ``PRICE_TOLERANCE`` of ``market_price``."""
    low, high = price_band(market_price, current_settings().price_tolerance)
    return low <= price <= high


def _count_order(transaction_id: int, market_price: Decimal) -> None:
    """Count the next order in the ledger, committed (no count, no order).

    :raises OrderNotCounted: the write failed, or the attempt is no longer pending.
    """
    try:
        with autocommit() as connection:  # committed as it is updated
            counted = transactions.count_order(connection, transaction_id, market_price)
    except SQLAlchemyError as exc:
        log.warning(
            "order not counted, not sent",
            extra={"transaction_id": transaction_id, "error": type(exc).__name__},
        )
        raise OrderNotCounted() from exc
    if not counted:
        raise OrderNotCounted()


def _error_of(transaction: Transaction, replayed: bool) -> ServiceError:
    details = _attempt_details(transaction)
    if transaction.status == TransactionStatus.REJECTED:
        return _out_of_tolerance(transaction, details)
    if transaction.status == TransactionStatus.UNKNOWN:
        return OrderOutcomeUnknown(details=details)
    if transaction.reason == UnknownSymbol.code:
        return UnknownSymbol(
            f"No stock {transaction.symbol} is listed by the market vendor.", details=details
        )
    if transaction.reason in (LEDGER_UNAVAILABLE, sweep.NO_ORDER_SENT):
        return OrderNotSent(details=details)
    if transaction.reason == CircuitOpen.code and replayed:
        return CircuitOpen(_CIRCUIT_OPEN_REPLAYED, details=details)
    if transaction.reason == CircuitOpen.code:
        return CircuitOpen(details=details, retry_after=vendor_client().circuit_retry_after())
    details.update(vendorStatus=transaction.vendor_status, vendorMessage=transaction.vendor_message)
    if (
        transaction.reason == VendorRejected.code
        and transaction.vendor_status not in _CREDENTIAL_STATUSES
    ):
        return VendorRejected(
            transaction.vendor_message, vendor_status=transaction.vendor_status, details=details
        )
    return VendorUnavailable(details=details)


def _out_of_tolerance(transaction: Transaction, details: dict[str, Any]) -> PriceOutOfTolerance:
    assert transaction.market_price is not None  # a rejection is decided on a market price
    tolerance = current_settings().price_tolerance
    low, high = price_band(transaction.market_price, tolerance)
    return PriceOutOfTolerance(
        f"The price {money_text(transaction.requested_price)} is outside the accepted band "
        f"{money_text(low)}–{money_text(high)} ({tolerance:%} of the market price "
        f"{money_text(transaction.market_price)}).",
        details={
            **details,
            "requestedPrice": money_text(transaction.requested_price),
            "marketPrice": money_text(transaction.market_price),
            "minPrice": money_text(low),
            "maxPrice": money_text(high),
            "tolerance": str(tolerance),
        },
    )
