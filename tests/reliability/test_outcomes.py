"""A buy's outcome is never discarded (issue 12, point 1): PostgreSQL cut while
the vendor executes an order, or right after it answered, and a worker killed
mid-order, under real gunicorn.

The vendor is slowed down (``latency``) so that each fault lands inside the
buy; prices are cached first so that the order is the buy's one vendor call.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from service.vendorapi.simulator import SIMULATOR_API_KEY
from tests.bench.harness import vendor_quotes
from tests.processes import run_flask
from tests.reliability.ledger import settle
from tests.reliability.rig import Rig, in_background

VENDOR_LATENCY = 1.5  # seconds the vendor takes to answer (page or order)
LONGER_THAN_THE_BUY_WAITS = 12.0  # a buy waits ~9 s for its ledger to come back


Quote = tuple[str, str]  # symbol, price


@pytest.fixture
def slow_rig(make_rig: Callable[..., Rig]) -> tuple[Rig, list[Quote]]:
    """The rig with vendor timeouts long enough for a slow vendor, prices
    cached, and the first page's quotes."""
    rig = make_rig(VENDOR_TIMEOUT_SECONDS="10", GUNICORN_TIMEOUT="60")
    quotes = vendor_quotes(rig.vendor_url)
    assert rig.get("/stocks").status_code == 200  # caches the first page's quotes
    rig.configure_vendor(latency=VENDOR_LATENCY)
    return rig, quotes


def _buy(rig: Rig, quote: Quote, quantity: int, key: str) -> requests.Response:
    symbol, price = quote
    return requests.post(
        f"{rig.url}/stocks/{symbol}/buy",
        json={"userId": "alice", "price": price, "quantity": quantity},
        headers={"Idempotency-Key": key},
        timeout=60,
    )


def _row(rig: Rig, key: str) -> dict[str, Any]:
    engine = sa.create_engine(rig.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT status, reason, attempts, total FROM transactions"
                    " WHERE idempotency_key = :key"
                ),
                {"key": key},
            ).one()
            held = conn.execute(
                sa.text("SELECT coalesce(sum(quantity), 0) FROM holdings")
            ).scalar_one()
    finally:
        engine.dispose()
    return {**row._mapping, "held": held}


def _executed(rig: Rig, quantity: int) -> int:
    return sum(1 for order in rig.vendor_orders() if order["quantity"] == quantity)


def _sweep_job(rig: Rig) -> subprocess.CompletedProcess[str]:
    """``flask buys sweep`` as the CronJob runs it, against the rig's ledger and Redis."""
    env = {**os.environ, "DATABASE_URL": rig.database_url, "REDIS_URL": rig.redis.url}
    return run_flask("buys", "sweep", env=env)


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def _attempts(rig: Rig, key: str) -> int | None:
    """The attempt's counted orders, read directly (not through the proxy); None: no row."""
    engine = sa.create_engine(rig.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text("SELECT attempts FROM transactions WHERE idempotency_key = :key"),
                {"key": key},
            ).scalar_one_or_none()
    finally:
        engine.dispose()


def _counted(rig: Rig, *keys: str) -> Callable[[], bool]:
    return lambda: all((_attempts(rig, key) or 0) >= 1 for key in keys)


def _executed_by_vendor(rig: Rig, *quantities: int) -> Callable[[], bool]:
    """The simulator executes an order at once and answers after its latency."""
    return lambda: all(_executed(rig, quantity) == 1 for quantity in quantities)


@contextmanager
def _rows_locked(rig: Rig, *keys: str) -> Iterator[None]:
    """Hold the attempts' rows (directly, not through the proxy): their final
    write waits until the block ends."""
    engine = sa.create_engine(rig.database_url)
    try:
        with engine.connect() as conn, conn.begin():
            conn.execute(
                sa.text(
                    "SELECT id FROM transactions WHERE idempotency_key IN :keys FOR UPDATE"
                ).bindparams(sa.bindparam("keys", expanding=True)),
                {"keys": list(keys)},
            )
            yield
    finally:
        engine.dispose()


def test_postgres_cut_during_the_vendor_call_the_buy_records_its_success(
    slow_rig: tuple[Rig, list[Quote]],
) -> None:
    rig, quotes = slow_rig
    with in_background(lambda: _buy(rig, quotes[0], 3, "cut-during-call")) as buying:
        _wait_for(_counted(rig, "cut-during-call"), "the order was counted")
        rig.database_proxy.cut()  # the vendor is executing the order
        _wait_for(_executed_by_vendor(rig, 3), "the vendor executed the order")
        time.sleep(VENDOR_LATENCY + 0.5)  # it answered; the outcome cannot be written
        rig.database_proxy.restore()
    first = buying.result()

    assert first.status_code == 201, first.text  # the buy waited for its ledger
    again = _buy(rig, quotes[0], 3, "cut-during-call")
    assert again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    row = _row(rig, "cut-during-call")
    assert (row["status"], row["attempts"], row["held"]) == ("succeeded", 1, 3)
    assert _executed(rig, 3) == 1


def test_postgres_cut_right_after_the_vendor_answered_the_outcome_is_applied_later(
    slow_rig: tuple[Rig, list[Quote]],
) -> None:
    rig, quotes = slow_rig
    with (
        in_background(lambda: _buy(rig, quotes[0], 4, "retried")) as retried,
        in_background(lambda: _buy(rig, quotes[1], 5, "swept")) as swept,
    ):
        _wait_for(_counted(rig, "retried", "swept"), "both orders were counted")
        with _rows_locked(rig, "retried", "swept"):
            _wait_for(_executed_by_vendor(rig, 4, 5), "the vendor executed both orders")
            time.sleep(VENDOR_LATENCY + 0.3)  # it answered: both buys wait for the lock to write
            rig.database_proxy.cut()
        time.sleep(LONGER_THAN_THE_BUY_WAITS)  # both buys gave up waiting for the ledger
        rig.database_proxy.restore()
    for response in (retried.result(), swept.result()):
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "outcome_not_recorded"
    assert _row(rig, "retried")["status"] == "pending"

    # The client retries with its key: the kept outcome becomes the row's.
    again = _buy(rig, quotes[0], 4, "retried")
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "succeeded"
    # The sweep applies the other one before it looks at pending rows.
    job = _sweep_job(rig)
    assert job.returncode == 0, job.stderr
    [said] = [line for line in job.stdout.splitlines() if not line.startswith("{")]  # no logs
    assert said.startswith("buys sweep: 1 attempt(s) finalised")

    assert _buy(rig, quotes[1], 5, "swept").status_code == 201
    assert _buy(rig, quotes[0], 4, "retried").status_code == 201
    for key, quantity in (("retried", 4), ("swept", 5)):
        row = _row(rig, key)
        assert (row["status"], row["attempts"]) == ("succeeded", 1), key
        assert _executed(rig, quantity) == 1
    assert _row(rig, "swept")["held"] == 4 + 5  # each credited once


def _kill_workers(rig: Rig) -> None:
    """SIGKILL every gunicorn worker (the master starts new ones)."""
    master = rig.service.process.pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert workers
    for pid in workers:
        os.kill(int(pid), signal.SIGKILL)


def _wait_until_up(rig: Rig, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if rig.get("/healthz").status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("gunicorn did not start new workers")


def _killed_mid_buy(rig: Rig, quote: Quote, quantity: int, key: str, *, counted: bool) -> None:
    """Buy, and kill the workers once the attempt is claimed (``counted``:
    once its order is counted, so the vendor is executing it)."""

    def buy() -> None:
        with pytest.raises(requests.ConnectionError):
            _buy(rig, quote, quantity, key)

    def reached() -> bool:
        attempts = _attempts(rig, key)
        return attempts is not None and (attempts >= 1 or not counted)

    with in_background(buy):
        _wait_for(reached, f"{key} was claimed")
        _kill_workers(rig)
    _wait_until_up(rig)


def _third_page_quote(vendor_url: str) -> Quote:
    """A stock of the vendor's third page (neither cached nor prefetched yet)."""
    token = None
    for _ in range(3):
        response = requests.get(
            vendor_url + "/stocks",
            params={"nextToken": token} if token else None,
            headers={"x-api-key": SIMULATOR_API_KEY},
            timeout=10,
        )
        response.raise_for_status()
        page = json.loads(response.text, parse_float=Decimal)["data"]
        token = page["nextToken"]
    item = page["items"][0]
    return item["symbol"], str(item["price"])


def test_a_killed_worker_leaves_a_row_that_says_whether_an_order_was_sent(
    make_rig: Callable[..., Rig],
) -> None:
    rig = make_rig(VENDOR_TIMEOUT_SECONDS="10")
    [cached, *_] = vendor_quotes(rig.vendor_url)
    uncached = _third_page_quote(rig.vendor_url)
    assert rig.get("/stocks").status_code == 200  # caches the first page's quotes
    rig.configure_vendor(latency=VENDOR_LATENCY)

    _killed_mid_buy(rig, cached, 7, "killed-mid-order", counted=True)  # inside the order
    # … and while it looks the price up (a page fetch takes the vendor's latency)
    _killed_mid_buy(rig, uncached, 6, "killed-before-order", counted=False)

    assert settle(rig.database_url, rig.redis.url) == 2
    mid = _row(rig, "killed-mid-order")
    assert (mid["status"], mid["reason"]) == ("unknown", "interrupted")
    assert mid["attempts"] >= 1  # an order may exist: it is reconciled, never resent
    before = _row(rig, "killed-before-order")
    assert (before["status"], before["reason"], before["attempts"]) == (
        "failed",
        "no_order_sent",
        0,
    )
    assert _executed(rig, 6) == 0
    replayed = _buy(rig, uncached, 6, "killed-before-order")
    assert replayed.status_code == 503
    assert replayed.json()["error"]["code"] == "order_not_sent"
    assert "Retry-After" not in replayed.headers
