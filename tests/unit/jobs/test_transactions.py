"""``flask transactions list|resolve``: an operator settles an unknown outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from click.testing import Result
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.config import Settings
from service.extensions import db
from service.vendorapi.simulator import Simulator
from tests.buys_support import holdings, ledger, post_buy, summaries
from tests.functional.test_health import DEAD_POSTGRES
from tests.ledger import record


def run(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["transactions", *args])


def resolve(app: Flask, transaction_id: int, outcome: str, *extra: str) -> Result:
    return run(
        app,
        "resolve",
        str(transaction_id),
        "--as",
        outcome,
        "--by",
        "carol",
        "--note",
        "vendor order list, ticket 42",
        *extra,
    )


@pytest.fixture
def lost_buy(client: FlaskClient, simulator: Simulator) -> int:
    """A buy of 2 AAPL whose answer the vendor lost (it executed): ``unknown``."""
    simulator.configure(lost_rate=1.0, fault_operations=("buy",))
    response = post_buy(client, simulator.price("AAPL"), 2)
    assert response.status_code == 502
    simulator.configure(lost_rate=0.0)
    (row,) = ledger()
    assert row.status == "unknown"
    return row.id


def _portfolio_quantity(client: FlaskClient) -> int:
    body = client.get("/users/alice/portfolios").json
    assert body is not None
    return sum(holding["quantity"] for item in body["items"] for holding in item["holdings"])


def test_resolving_a_lost_answer_as_succeeded_credits_the_holding_and_summary_once(
    app: Flask, client: FlaskClient, simulator: Simulator, lost_buy: int
) -> None:
    requested = ledger()[0].requested_price
    assert _portfolio_quantity(client) == 0  # cached now: the resolution must invalidate it

    first = resolve(app, lost_buy, "succeeded")
    again = resolve(app, lost_buy, "succeeded")

    assert (first.exit_code, again.exit_code) == (0, 0), first.output + again.output
    assert first.stdout.startswith(f"transaction {lost_buy} resolved succeeded at ")
    assert f"by carol at {datetime.now(UTC):%Y-%m-%d}" in first.stdout
    assert "already resolved; nothing changed" in again.stdout
    holding = holdings()["AAPL"]
    assert (holding.quantity, holding.cost_basis) == (2, requested * 2)
    assert _portfolio_quantity(client) == 2
    figures = summaries()
    assert figures[("unknown", "vendor_answer_lost", "AAPL")].count == 0
    succeeded = figures[("succeeded", "", "AAPL")]
    assert (succeeded.count, succeeded.quantity, succeeded.amount) == (1, 2, requested * 2)
    (row,) = ledger()
    assert row.status == "unknown"  # what the service knew; the resolution says the rest
    assert row.resolution is not None
    assert (row.resolution.status, row.resolution.total) == ("succeeded", requested * 2)


def test_a_conflicting_resolution_fails_and_changes_nothing(app: Flask, lost_buy: int) -> None:
    assert resolve(app, lost_buy, "succeeded", "--executed-price", "150.5").exit_code == 0

    other_outcome = resolve(app, lost_buy, "failed")
    other_price = resolve(app, lost_buy, "succeeded", "--executed-price", "151")

    assert (other_outcome.exit_code, other_price.exit_code) == (4, 4)
    assert other_outcome.stderr.startswith(
        f"Error: Transaction {lost_buy} was already resolved as succeeded at 150.50 by carol"
    )
    holding = holdings()["AAPL"]
    assert (holding.quantity, holding.cost_basis) == (2, Decimal("301.00"))
    assert summaries()[("succeeded", "", "AAPL")].count == 1


def test_resolving_as_failed_moves_the_summary_and_changes_no_holding(
    app: Flask, lost_buy: int
) -> None:
    result = resolve(app, lost_buy, "failed")

    assert result.exit_code == 0, result.output
    assert holdings() == {}
    figures = summaries()
    assert figures[("unknown", "vendor_answer_lost", "AAPL")].count == 0
    assert figures[("failed", "vendor_answer_lost", "AAPL")].count == 1


def test_concurrent_resolutions_of_one_row_credit_it_once(
    make_app: Callable[..., Flask], lost_buy: int
) -> None:
    apps = [make_app() for _ in range(4)]

    def settle(app: Flask) -> int:
        with app.app_context():
            return resolve(app, lost_buy, "succeeded").exit_code

    with ThreadPoolExecutor(len(apps)) as pool:
        codes = list(pool.map(settle, apps))

    assert codes == [0, 0, 0, 0]
    assert holdings()["AAPL"].quantity == 2
    assert summaries()[("succeeded", "", "AAPL")].count == 1


def test_only_an_unknown_row_can_be_resolved(app: Flask) -> None:
    bought = record(db.session(), datetime.now(UTC), "succeeded")
    db.session.commit()

    refused = resolve(app, bought.id, "failed")
    missing = resolve(app, 999_999, "failed")

    assert refused.exit_code == 4
    assert refused.stderr == (
        f"Error: Transaction {bought.id} is succeeded: only an unknown outcome can be resolved.\n"
    )
    assert missing.exit_code == 3
    assert missing.stderr == "Error: No transaction 999999.\n"


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (("--executed-price", "-1"), "--executed-price: A positive price"),
        (("--executed-price", "1.0000001"), "--executed-price: A positive price"),
        (("--as", "maybe"), "'maybe' is not one of 'succeeded', 'failed'"),
        (("--by", ""), "--by: 1–64 characters."),
    ],
)
def test_bad_options_are_usage_errors(app: Flask, extra: tuple[str, ...], complaint: str) -> None:
    row = record(db.session(), datetime.now(UTC), "unknown", reason="vendor_answer_lost")
    db.session.commit()

    result = resolve(app, row.id, "succeeded", *extra)

    assert result.exit_code == 2
    assert complaint in result.stderr
    assert ledger()[0].resolution is None


def test_a_failed_resolution_has_no_price(app: Flask) -> None:
    row = record(db.session(), datetime.now(UTC), "unknown", reason="vendor_answer_lost")
    db.session.commit()

    result = resolve(app, row.id, "failed", "--executed-price", "10")

    assert result.exit_code == 2
    assert "--executed-price: Only an executed (succeeded) order has a price." in result.stderr


def test_list_filters_and_shows_resolutions(app: Flask) -> None:
    now = datetime.now(UTC)
    session = db.session()
    old = record(session, now - timedelta(days=3), "unknown", reason="vendor_timeout")
    settled = record(session, now - timedelta(days=1), "unknown", reason="vendor_answer_lost")
    record(session, now, "succeeded")
    record(session, now, "unknown", user_id="bob", reason="interrupted")
    session.commit()
    assert resolve(app, settled.id, "failed").exit_code == 0

    unknown = run(app, "list", "--status", "unknown", "--user", "user-1")
    recent = run(app, "list", "--since", f"{now - timedelta(days=1):%Y-%m-%d}", "--json")
    open_ones = run(app, "list", "--unresolved")

    assert unknown.exit_code == 0, unknown.output
    lines = unknown.stdout.splitlines()
    assert lines[0].split() == [
        "id", "created", "(UTC)", "user", "symbol", "qty", "price", "status", "reason", "resolution"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == [str(old.id), str(settled.id)]
    assert "failed by carol at" in lines[2]
    assert lines[2].endswith("vendor order list, ticket 42")
    items = [json.loads(line) for line in recent.stdout.splitlines()]
    assert [item["userId"] for item in items] == ["user-1", "user-1", "bob"]
    assert items[0]["resolution"]["status"] == "failed"
    assert items[0]["resolution"]["by"] == "carol"
    assert items[1]["resolution"] is None
    assert [line.split()[0] for line in open_ones.stdout.splitlines()[1:]] == [
        str(old.id),
        str(ledger()[3].id),
    ]


def test_without_the_database_both_commands_say_so_in_one_line_and_exit_1(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(database_url=DEAD_POSTGRES))

    listed = run(app, "list")
    resolved = resolve(app, 1, "failed")

    assert (listed.exit_code, resolved.exit_code) == (1, 1)
    assert listed.stderr.startswith("Error: transactions list failed: the database is unavailable")
    assert resolved.stderr.startswith("Error: transactions resolve failed: the database")
    assert len(resolved.stderr.splitlines()) == 1
