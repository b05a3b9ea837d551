"""``flask buys sweep``: output and exit codes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask

from service.app import create_app
from service.config import Settings
from service.services.orders import ABANDONED_AFTER
from tests.buys_support import ledger, pending, summaries
from tests.functional.test_health import DEAD_POSTGRES


def test_the_sweep_ends_an_attempt_a_crashed_worker_left_pending_once(app: Flask) -> None:
    crashed = pending(age=ABANDONED_AFTER + timedelta(seconds=1), orders=1)
    running = pending(age=timedelta(seconds=1))
    runner = app.test_cli_runner()

    first = runner.invoke(args=["buys", "sweep"])
    second = runner.invoke(args=["buys", "sweep"])

    assert (first.exit_code, second.exit_code) == (0, 0), first.output + second.output
    assert first.stdout.splitlines() == [
        "buys sweep: 1 attempt(s) finalised (kept outcomes applied; pending for over"
        " 5 minutes: failed if no order was sent, else unknown)"
    ]
    assert second.stdout.startswith("buys sweep: 0 attempt(s)")
    statuses = {row.id: (row.status, row.reason) for row in ledger()}
    assert statuses == {crashed: ("unknown", "interrupted"), running: ("pending", None)}
    assert summaries()[("unknown", "interrupted", "AAPL")].count == 1


def test_without_the_database_the_sweep_says_so_in_one_line_and_exits_1(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(database_url=DEAD_POSTGRES))

    result = app.test_cli_runner().invoke(args=["buys", "sweep"])

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: buys sweep failed: the database is unavailable (connection"
        ' to server at "127.0.0.1", port 1 failed: Connection refused)'
    ]
