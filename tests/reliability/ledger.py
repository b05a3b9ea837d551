"""Buy traffic for the reliability tests, and the ledger invariants it must keep.

Every attempt has its own ``Idempotency-Key`` and its own quantity, so that an
order the vendor executed can be traced back to the one attempt that sent it
(the vendor knows nothing of our keys). The invariants, checked against
PostgreSQL and the simulator once the traffic has settled:

- an attempt that got an answer other than a 5xx or a 429 has exactly one
  ledger row; an attempt without a row was never sent to the vendor;
- no row is left ``pending``; a ``201`` was given exactly for ``succeeded`` rows;
- one vendor order at most per idempotency key;
- vendor orders = the succeeded attempts + a subset of the ``unknown`` ones;
- each user's holdings = the sum of their succeeded buys (quantity and cost).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from service.app import create_app
from service.config import Settings
from service.extensions import db
from service.services.sweep import finalise_abandoned
from tests.bench.harness import LoadResult, load, vendor_quotes
from tests.reliability.rig import Rig

USERS = 3
SYMBOLS = 4
UNDECIDED = (None, 409, 500)  # answers that do not tell how the attempt ended


@dataclass(frozen=True)
class Attempt:
    """One buy a client means to make (with its own key and quantity)."""

    key: str
    user_id: str
    symbol: str
    price: str
    quantity: int

    @property
    def path(self) -> str:
        return f"/stocks/{self.symbol}/buy"

    @property
    def body(self) -> dict[str, Any]:
        return {"userId": self.user_id, "price": self.price, "quantity": self.quantity}


def plan(rig: Rig, count: int, first: int = 1) -> list[Attempt]:
    """``count`` attempts at the vendor's current prices, quantities ``first``,
    ``first + 1`` …, spread over a few users and symbols."""
    quotes = vendor_quotes(rig.vendor_url)
    attempts = []
    for index in range(count):
        symbol, price = quotes[index % SYMBOLS]
        quantity = first + index
        attempts.append(
            Attempt(f"attempt-{quantity}", f"user-{index % USERS}", symbol, price, quantity)
        )
    return attempts


def send(
    rig: Rig, attempts: list[Attempt], *, concurrency: int = 4, rate: float | None = None
) -> tuple[dict[str, int | None], LoadResult]:
    """Send the attempts (``rate`` per second, else as fast as answers come);
    returns each key's answer (``None``: no answer) and the load figures."""
    result = load(
        rig.url,
        [attempt.path for attempt in attempts],
        total=len(attempts),
        concurrency=concurrency,
        method="POST",
        bodies=[attempt.body for attempt in attempts],
        headers_for=lambda index: {"Idempotency-Key": attempts[index].key},
        rate_per_second=rate,
    )
    return {attempts[index].key: status for index, status in result.outcomes.items()}, result


def replay(
    rig: Rig,
    attempts: list[Attempt],
    answers: dict[str, int | None],
    undecided: tuple[int | None, ...] = UNDECIDED,
) -> dict[str, int | None]:
    """Send every attempt again with its key, as a client that is not sure of
    an answer does. A replay must answer as the first request was answered,
    and buy nothing; an attempt whose first answer said nothing of its fate
    (``undecided``: none, 409 in progress, 500 …) gets its real one now.

    :returns: each key's final answer.
    """
    before = _orders(rig)
    replies, _ = send(rig, attempts)
    after = _orders(rig)
    for attempt in attempts:
        first, again = answers[attempt.key], replies[attempt.key]
        if first not in undecided:
            assert again == first, f"{attempt.key}: answered {first}, replayed as {again}"
            assert after[attempt.quantity] == before[attempt.quantity], f"{attempt.key} re-sent"
    return replies


def _orders(rig: Rig) -> Counter[int]:
    """The vendor's orders by quantity (each attempt has its own)."""
    return Counter(order["quantity"] for order in rig.vendor_orders())


def settle(database_url: str, redis_url: str | None = None) -> int:
    """Apply the outcomes kept in ``redis_url`` and end the attempts whose
    request died with the database (what the sweep does, without its
    five-minute grace); how many it ended."""
    app = create_app(Settings.from_env({}, database_url=database_url, redis_url=redis_url))
    with app.app_context():
        try:
            return finalise_abandoned(timedelta(0))
        finally:
            db.session.remove()
            for engine in db.engines.values():
                engine.dispose()


def assert_invariants(
    rig: Rig, attempts: list[Attempt], answers: dict[str, int | None]
) -> dict[str, Counter[str]]:
    """Assert the ledger invariants (module docstring); returns, for the
    report, the answers and the final statuses counted."""
    rows = _ledger(rig.database_url)
    orders = _orders(rig)
    holdings = _holdings(rig.database_url)
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_key[row["idempotency_key"]].append(row)
    statuses: Counter[str] = Counter()
    expected_holdings: Counter[tuple[str, str]] = Counter()
    expected_cost: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for attempt in attempts:
        answer = answers[attempt.key]
        found = by_key.pop(attempt.key, [])
        assert len(found) <= 1, f"{attempt.key}: {len(found)} ledger rows"
        if not found:
            refused = answer is None or answer == 429 or answer >= 500
            assert refused, f"{attempt.key}: answered {answer} but has no ledger row"
            assert orders[attempt.quantity] == 0, f"{attempt.key}: an order but no ledger row"
            statuses["no row"] += 1
            continue
        [row] = found
        status = row["status"]
        statuses[status] += 1
        assert status != "pending", f"{attempt.key} is still pending"
        assert (answer == 201) == (status == "succeeded"), f"{attempt.key}: {answer}, {status}"
        assert orders[attempt.quantity] <= 1, f"{attempt.key}: {orders[attempt.quantity]} orders"
        if status == "succeeded":
            assert orders[attempt.quantity] == 1, f"{attempt.key} succeeded without an order"
            expected_holdings[(attempt.user_id, attempt.symbol)] += attempt.quantity
            expected_cost[(attempt.user_id, attempt.symbol)] += row["total"]
        elif status != "unknown":
            assert orders[attempt.quantity] == 0, f"{attempt.key} is {status} but was executed"
    assert not by_key, f"ledger rows of no attempt: {sorted(by_key)}"
    assert {key: quantity for key, (quantity, _) in holdings.items()} == dict(expected_holdings)
    assert {key: cost for key, (_, cost) in holdings.items()} == dict(expected_cost)
    answered = Counter(
        "no answer" if answer is None else str(answer) for answer in answers.values()
    )
    return {"answers": answered, "ledger": statuses}


def _query(database_url: str, sql: str) -> list[sa.Row[Any]]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)))
    finally:
        engine.dispose()


def _ledger(database_url: str) -> list[dict[str, Any]]:
    sql = "SELECT idempotency_key, status, quantity, total FROM transactions"
    return [dict(row._mapping) for row in _query(database_url, sql)]


def _holdings(database_url: str) -> dict[tuple[str, str], tuple[int, Decimal]]:
    sql = (
        "SELECT p.user_id, h.symbol, h.quantity, h.cost_basis"
        " FROM holdings h JOIN portfolios p ON p.id = h.portfolio_id"
    )
    return {
        (row.user_id, row.symbol): (row.quantity, row.cost_basis)
        for row in _query(database_url, sql)
    }
