"""A client's own orders over HTTP: the history (filters, signed keyset pages
that hold still while buys arrive), lookup by id or Idempotency-Key, and the
PostgreSQL plan that serves it."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from service.extensions import db
from service.models import ResolutionStatus, Transaction
from service.services import resolutions
from service.vendorapi.simulator import Simulator
from tests.buys_support import STEADY_REPRICE_SECONDS, ledger, post_buy

STATUSES = ("pending", "succeeded", "rejected", "failed", "unknown")
SYMBOLS = ("AAPL", "PNNY", "MSFT", "BRK.B")
# The seeded attempts span the ten days from DAY0, well before any buy a test makes.
DAY0 = datetime.combine(date.today() - timedelta(days=30), time(), tzinfo=UTC)


@pytest.fixture(autouse=True)
def steady_prices(simulator: Simulator) -> None:
    simulator.configure(reprice_seconds=STEADY_REPRICE_SECONDS)


def _row(user_id: str, number: int, created_at: datetime, rng: random.Random) -> dict[str, Any]:
    status = rng.choice(STATUSES)
    price = Decimal("10.50")
    return {
        "user_id": user_id,
        "symbol": rng.choice(SYMBOLS),
        "quantity": 1 + number % 5,
        "requested_price": price,
        "status": status,
        "reason": None if status in ("pending", "succeeded") else "vendor_unavailable",
        "executed_price": price if status == "succeeded" else None,
        "total": price * (1 + number % 5) if status == "succeeded" else None,
        "attempts": 0 if status in ("pending", "rejected") else 1,
        "idempotency_key": f"{user_id}-{number}" if number % 3 == 0 else None,
        "created_at": created_at,
        "updated_at": created_at,
        "completed_at": None if status == "pending" else created_at,
    }


def seed(user_id: str, count: int, *, seed_value: int = 7, ties: int = 1) -> list[dict[str, Any]]:
    """Insert ``count`` past attempts of ``user_id`` over ten days (``ties``
    consecutive rows share one ``created_at``); returns them with their ids."""
    rng = random.Random(seed_value)
    step = timedelta(days=10) / count
    rows = [_row(user_id, n, DAY0 + step * (n - n % ties), rng) for n in range(count)]
    ids = db.session.execute(
        sa.insert(Transaction).returning(Transaction.id, sort_by_parameter_order=True), rows
    ).scalars()
    db.session.commit()
    return [{**row, "id": id_} for row, id_ in zip(rows, ids, strict=True)]


def newest_first(rows: list[dict[str, Any]]) -> list[int]:
    ordered = sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [row["id"] for row in ordered]


def pages(
    client: FlaskClient, user_id: str, query: dict[str, Any], between: Any = None
) -> Iterator[dict[str, Any]]:
    """Every page of the history, calling ``between()`` before each next page."""
    token = None
    while True:
        params = {**query, **({"nextToken": token} if token else {})}
        response = client.get(f"/users/{user_id}/transactions", query_string=params)
        assert response.status_code == 200, response.json
        body = response.json
        assert body is not None
        yield body
        token = body["nextToken"]
        if token is None:
            return
        if between is not None:
            between()


def fields_of(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "invalid_request"
    fields: dict[str, list[str]] = error["details"]["fields"]
    return fields


FILTERS: list[tuple[dict[str, Any], Any]] = [
    ({}, lambda r: True),
    ({"status": "failed,unknown"}, lambda r: r["status"] in ("failed", "unknown")),
    ({"status": "pending"}, lambda r: r["status"] == "pending"),
    ({"symbol": "pnny"}, lambda r: r["symbol"] == "PNNY"),
    (
        {
            "from": (DAY0 + timedelta(days=2)).date().isoformat(),
            "to": (DAY0 + timedelta(days=7, hours=12)).isoformat().replace("+00:00", "Z"),
        },
        lambda r: DAY0 + timedelta(days=2) <= r["created_at"] < DAY0 + timedelta(days=7, hours=12),
    ),
    (
        # an offset is converted to UTC: day 5 at 01:00+02:00 is day 4 at 23:00Z
        {
            "status": "succeeded,rejected",
            "symbol": "AAPL",
            "from": (DAY0 + timedelta(days=5)).date().isoformat() + "T01:00:00+02:00",
        },
        lambda r: (
            r["status"] in ("succeeded", "rejected")
            and r["symbol"] == "AAPL"
            and r["created_at"] >= DAY0 + timedelta(days=4, hours=23)
        ),
    ),
]


FILTER_IDS = ["all", "failed-unknown", "pending", "symbol", "from-to", "status-symbol-offset"]


@pytest.mark.parametrize(("query", "wanted"), FILTERS, ids=FILTER_IDS)
def test_the_history_pages_through_every_row_once_while_buys_arrive(
    client: FlaskClient, simulator: Simulator, query: dict[str, Any], wanted: Any
) -> None:
    rows = seed("alice", 400)
    seed("bob", 50, seed_value=8)  # never shown to alice
    market = simulator.price("AAPL")
    arrived: list[int] = []

    def buy_meanwhile() -> None:
        response = post_buy(client, market, 1)
        assert response.status_code == 201
        assert response.json is not None
        arrived.append(response.json["id"])

    seen = [
        item
        for page in pages(client, "alice", {**query, "limit": 9}, buy_meanwhile)
        for item in page["items"]
    ]

    expected = newest_first([row for row in rows if wanted(row)])
    assert len(expected) > 9  # several pages
    assert [item["id"] for item in seen] == expected
    assert {item["userId"] for item in seen} == {"alice"}
    assert arrived  # buys did arrive between the pages, and none of them shifted a page
    # A new first page starts with them.
    latest = client.get("/users/alice/transactions", query_string={"limit": len(arrived)})
    assert latest.json is not None
    assert [item["id"] for item in latest.json["items"]] == arrived[::-1]


def test_rows_created_at_the_same_moment_are_paged_by_id(client: FlaskClient) -> None:
    rows = seed("alice", 60, ties=20)  # three moments, twenty rows each
    seen = [item["id"] for page in pages(client, "alice", {"limit": 7}) for item in page["items"]]
    assert seen == newest_first(rows)


def test_a_page_holds_at_most_limit_items_and_the_last_has_no_token(client: FlaskClient) -> None:
    seed("alice", 30)
    sizes = [len(page["items"]) for page in pages(client, "alice", {"limit": 10})]
    assert sizes == [10, 10, 10]
    default = client.get("/users/alice/transactions").json
    assert default is not None
    assert len(default["items"]) == 25
    assert default["userId"] == "alice"
    empty = client.get("/users/nobody/transactions").json
    assert empty == {"userId": "nobody", "items": [], "nextToken": None}


def _final_attempts(client: FlaskClient, simulator: Simulator) -> dict[str, Any]:
    """One attempt for each final status, each sent with an Idempotency-Key."""
    market = simulator.price("AAPL")
    answers = {
        "succeeded": post_buy(client, market, 2, key="k-succeeded"),
        "rejected": post_buy(client, market * 2, 1, key="k-rejected"),
        "failed": post_buy(client, "10", 1, symbol="NOPE", key="k-failed"),
    }
    simulator.configure(lost_rate=1.0, fault_operations=("buy",))
    answers["unknown"] = post_buy(client, market, 3, key="k-unknown")
    return answers


def test_each_final_status_is_found_by_id_and_by_idempotency_key(
    client: FlaskClient, simulator: Simulator
) -> None:
    answers = _final_attempts(client, simulator)
    assert [answer.status_code for answer in answers.values()] == [201, 422, 404, 502]
    by_status = {row.status: row for row in ledger()}

    for status, row in by_status.items():
        by_id = client.get(f"/users/alice/transactions/{row.id}")
        assert by_id.status_code == 200
        assert by_id.headers["Cache-Control"] == "no-store"
        transaction = by_id.json
        assert transaction is not None
        assert (transaction["id"], transaction["status"]) == (row.id, status)
        assert transaction["idempotencyKey"] == f"k-{status}"
        assert transaction["resolution"] is None
        by_key = client.get(
            "/users/alice/transactions", query_string={"idempotencyKey": f"k-{status}"}
        )
        assert by_key.json == {"userId": "alice", "items": [transaction], "nextToken": None}
    # The buy's own answer is the same Transaction.
    succeeded = client.get(f"/users/alice/transactions/{by_status['succeeded'].id}")
    assert succeeded.json == answers["succeeded"].json
    failed = client.get(f"/users/alice/transactions/{by_status['failed'].id}").json
    assert failed is not None
    assert (failed["reason"], failed["attempts"]) == ("unknown_symbol", 0)
    unknown = client.get(f"/users/alice/transactions/{by_status['unknown'].id}").json
    assert unknown is not None
    assert (unknown["reason"], unknown["attempts"]) == ("vendor_answer_lost", 1)


def test_a_resolved_unknown_outcome_shows_its_resolution(
    client: FlaskClient, simulator: Simulator
) -> None:
    simulator.configure(lost_rate=1.0, fault_operations=("buy",))
    lost = post_buy(client, simulator.price("AAPL"), 2, key="lost-1")
    assert lost.status_code == 502
    (row,) = ledger()
    resolutions.resolve(
        row.id, status=ResolutionStatus.SUCCEEDED, by="carol", note="vendor order 8812"
    )

    by_key = client.get("/users/alice/transactions", query_string={"idempotencyKey": "lost-1"})
    assert by_key.json is not None
    (transaction,) = by_key.json["items"]
    assert transaction["status"] == "unknown"  # what the service knew
    resolution = transaction["resolution"]
    assert (resolution["status"], resolution["by"], resolution["note"]) == (
        "succeeded",
        "carol",
        "vendor order 8812",
    )
    assert resolution["executedPrice"] == transaction["requestedPrice"]
    assert client.get(f"/users/alice/transactions/{row.id}").json == transaction


@pytest.mark.parametrize("transaction_id", ["OTHER", "999999", "abc", "0", "-1", "1e3", "9" * 30])
def test_another_users_missing_or_malformed_id_is_the_same_404(
    client: FlaskClient, simulator: Simulator, transaction_id: str
) -> None:
    post_buy(client, simulator.price("AAPL"), 1, user_id="bob")
    (bobs,) = ledger()
    wanted = str(bobs.id) if transaction_id == "OTHER" else transaction_id

    response = client.get(f"/users/alice/transactions/{wanted}")

    assert response.status_code == 404
    assert response.json is not None
    assert response.json["error"]["code"] == "transaction_not_found"
    assert response.json["error"]["message"] == "No such transaction."
    assert client.get(f"/users/bob/transactions/{bobs.id}").status_code == 200


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "failed,"}, "status"),
        ({"status": ""}, "status"),
        ({"symbol": "NOT A SYMBOL"}, "symbol"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"to": "9999-12-31T23:00:00-02:00"}, "to"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "to"),
        ({"from": "2026-12-01", "to": "2026-12-01T00:00:00Z"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"idempotencyKey": ""}, "idempotencyKey"),
        ({"page": "2"}, "page"),
    ],
)
def test_bad_filters_are_400s_naming_the_field(
    client: FlaskClient, query: dict[str, str], field: str
) -> None:
    response = client.get("/users/alice/transactions", query_string=query)
    assert list(fields_of(response)) == [field]


def test_a_token_is_refused_unless_issued_for_this_user_and_these_filters(
    client: FlaskClient,
) -> None:
    seed("alice", 30)
    seed("bob", 30, seed_value=9)
    first = client.get("/users/alice/transactions", query_string={"limit": 5}).json
    assert first is not None
    token = first["nextToken"]
    refused = [
        client.get("/users/bob/transactions", query_string={"nextToken": token}),
        client.get(
            "/users/alice/transactions", query_string={"nextToken": token, "status": "failed"}
        ),
        client.get("/users/alice/transactions", query_string={"nextToken": token[:-2] + "xx"}),
        client.get("/users/alice/transactions", query_string={"nextToken": "forged"}),
    ]
    for response in refused:
        assert response.status_code == 400
        assert response.json is not None
        assert response.json["error"]["code"] == "invalid_token"
    # Another limit with the same filters follows the same token.
    following = client.get(
        "/users/alice/transactions", query_string={"nextToken": token, "limit": 50}
    ).json
    assert following is not None
    assert len(following["items"]) == 25


def test_user_data_is_never_cached(client: FlaskClient, simulator: Simulator) -> None:
    for path in ("/users/alice/transactions", "/users/alice/portfolios"):
        assert client.get(path).headers["Cache-Control"] == "no-store"
    assert client.get("/users/alice/transactions?limit=0").headers["Cache-Control"] == "no-store"
    assert client.get("/users/alice/transactions/1").headers["Cache-Control"] == "no-store"
    assert post_buy(client, simulator.price("AAPL"), 1).headers["Cache-Control"] == "no-store"
    assert "Cache-Control" not in client.get("/stocks?limit=1").headers  # market data


def test_a_page_costs_two_queries_whatever_its_size(client: FlaskClient) -> None:
    seed("alice", 120)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        page = client.get("/users/alice/transactions", query_string={"limit": 100}).json
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    assert page is not None
    assert len(page["items"]) == 100
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2, selects  # the page, and its rows' resolutions


def _history_plan(client: FlaskClient, query: dict[str, str]) -> str:
    """PostgreSQL's plan of the statement the history request runs."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "ORDER BY transactions.created_at DESC" in statement:
            statements.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        assert client.get("/users/user7/transactions", query_string=query).status_code == 200
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    (statement, parameters), *_ = statements
    with db.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars()
        return "\n".join(plan)


def test_the_history_is_served_by_an_index_not_a_table_scan(client: FlaskClient) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO transactions (user_id, symbol, quantity, requested_price, status,"
                " attempts, created_at, updated_at, completed_at)"
                " SELECT 'user' || (n % 500), 'AAPL', 1, 10, 'failed', 1,"
                " now() - n * interval '1 minute', now(), now()"
                " FROM generate_series(1, 50000) AS n"
            )
        )
        conn.execute(sa.text("ANALYZE transactions"))
    first = client.get("/users/user7/transactions", query_string={"limit": 5}).json
    assert first is not None

    for query in (
        {"limit": "25"},
        {"limit": "25", "nextToken": first["nextToken"]},
        {"symbol": "AAPL"},
        {"status": "failed", "from": "2026-01-01"},
    ):
        plan = _history_plan(client, query)
        assert "Index" in plan, plan
        assert "Seq Scan" not in plan, plan
    assert "ix_transactions_user_created" in _history_plan(client, {"limit": "25"})
