"""A client's own orders: the history of buy attempts and one attempt by id
(``GET /users/{userId}/transactions[/{id}]``, DESIGN §4).

The history is served newest first from PostgreSQL by keyset pagination: a
page ends at a position (``created_at``, ``id``) and the next one starts
strictly below it, so buys made while a client pages (all newer) never shift
the pages, and no row is shown twice or skipped. ``nextToken`` is that
position, signed (:mod:`service.services.cursors`) together with a
fingerprint of the user and filters it was issued for: it cannot be forged,
edited or carried over to another user's or another filter's history.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from service.errors import TransactionNotFound
from service.extensions import db
from service.models import Transaction
from service.repositories import transactions
from service.repositories.transactions import HistoryFilter
from service.services import cursors

CURSOR_KIND = "history"
_CURSOR_KEYS = {"t", "i", "f"}
# A ledger id: BIGINT, so at most 2^63 - 1 (19 digits).
_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class TransactionPage:
    """One page of a user's history; ``next_token`` is ``None`` on the last."""

    user_id: str
    items: Sequence[Transaction]
    next_token: str | None


def history(
    user_id: str,
    *,
    limit: int,
    next_token: str | None = None,
    statuses: Sequence[str] = (),
    symbol: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    idempotency_key: str | None = None,
) -> TransactionPage:
    """The user's attempts, newest first, at most ``limit``, continuing after
    ``next_token`` when given: those with one of ``statuses`` (any when
    empty), of ``symbol``, created in ``[start, end)``, with ``idempotency_key``.

    :raises InvalidToken: ``next_token`` was not issued by this service for
        this user and these filters.
    """
    where = HistoryFilter(tuple(statuses), symbol, start, end, idempotency_key)
    fingerprint = _fingerprint(user_id, where)
    before = _position(next_token, fingerprint) if next_token else None
    session = db.session()
    rows = transactions.history(session, user_id, where, before=before, limit=limit + 1)
    # Detached as loaded (resolutions included): read after the commit without
    # a refresh query per row.
    session.expunge_all()
    session.commit()
    items, more = rows[:limit], len(rows) > limit
    following = None
    if more:
        last = items[-1]
        following = cursors.issue(
            CURSOR_KIND, {"t": last.created_at.isoformat(), "i": last.id, "f": fingerprint}
        )
    return TransactionPage(user_id, items, following)


def transaction(user_id: str, transaction_id: str) -> Transaction:
    """The user's attempt whose id is ``transaction_id`` (as the path wrote it).

    :raises TransactionNotFound: no such id, not an id at all, or another
        user's attempt (the same answer: no hint of what exists).
    """
    if _ID.fullmatch(transaction_id) is None or int(transaction_id) > _MAX_ID:
        raise TransactionNotFound(details={"transactionId": transaction_id})
    session = db.session()
    found = transactions.of_user(session, user_id, int(transaction_id))
    session.expunge_all()
    session.commit()
    if found is None:
        raise TransactionNotFound(details={"transactionId": transaction_id})
    return found


def _position(next_token: str, fingerprint: str) -> tuple[datetime, int]:
    payload = cursors.read(CURSOR_KIND, next_token, _CURSOR_KEYS)
    if payload["f"] != fingerprint:
        raise cursors.invalid_token(
            "This token belongs to another history (other user or filters); start again without it."
        )
    # Signed by this service: the position it wrote.
    return datetime.fromisoformat(payload["t"]), int(payload["i"])


def _fingerprint(user_id: str, where: HistoryFilter) -> str:
    """What a cursor is bound to: the user and every filter (not the limit)."""
    canonical = json.dumps(
        [
            user_id,
            sorted(where.statuses),
            where.symbol,
            where.start.isoformat() if where.start else None,
            where.end.isoformat() if where.end else None,
            where.idempotency_key,
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
