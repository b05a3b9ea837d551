"""The tokens refresh against the simulator and a real Redis."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from tenacity import RetryCallState

from service.errors import AlreadyRunning
from service.marketdata import store
from service.services import tokens
from service.vendorapi.client import StockPage, VendorClient
from service.vendorapi.simulator import Simulator
from tests.vendor_stub import StubVendor


def no_wait(_state: RetryCallState) -> float:
    return 0.0


def _token_map(redis_client: redis.Redis) -> dict[str, str]:
    raw: dict[bytes, bytes] = redis_client.hgetall(store.TOKEN_MAP_KEY)  # type: ignore[assignment]
    return {key.decode(): value.decode() for key, value in raw.items()}


def _page(app: Flask, token: str) -> StockPage:
    client: VendorClient = app.extensions["vendor"]
    return client.list_stocks(token or None)


def test_refresh_maps_every_symbol_to_the_page_that_lists_it(
    app: Flask, simulator: Simulator, redis_client: redis.Redis
) -> None:
    progress: list[tuple[int, int]] = []
    summary = tokens.refresh_tokens(progress=lambda *done: progress.append(done), wait=no_wait)
    assert summary.ok
    assert (summary.pages, summary.symbols, summary.skipped) == (
        simulator.page_count(),
        len(simulator.symbols()),
        0,
    )
    mapped = _token_map(redis_client)
    assert set(mapped) == set(simulator.symbols())
    for token in set(mapped.values()):
        listed = {item.symbol for item in _page(app, token).items}
        assert {symbol for symbol, on in mapped.items() if on == token} == listed
    catalogue = json.loads(redis_client.get(store.CATALOGUE_KEY) or "{}")
    assert [entry[0] for entry in catalogue["stocks"]] == simulator.symbols()
    assert progress[-1] == (simulator.page_count(), len(simulator.symbols()))


def test_refresh_forgets_symbols_the_vendor_no_longer_lists(
    app: Flask, redis_client: redis.Redis
) -> None:
    redis_client.hset(store.TOKEN_MAP_KEY, "GONE", "")
    assert tokens.refresh_tokens(wait=no_wait).ok
    assert "GONE" not in _token_map(redis_client)


def test_a_failing_page_is_retried(app: Flask, simulator: Simulator) -> None:
    simulator.configure(error_rate=1.0)
    waits: list[int] = []

    def heal(state: RetryCallState) -> float:
        waits.append(state.attempt_number)
        simulator.configure(error_rate=0.0)
        return 0.0

    summary = tokens.refresh_tokens(wait=heal)
    assert summary.ok
    assert waits == [1]
    assert summary.symbols == len(simulator.symbols())


def test_a_run_that_cannot_finish_keeps_the_last_catalogue_and_says_why(
    app: Flask, simulator: Simulator, redis_client: redis.Redis
) -> None:
    assert tokens.refresh_tokens(wait=no_wait).ok
    catalogue = redis_client.get(store.CATALOGUE_KEY)
    simulator.configure(error_rate=1.0)
    summary = tokens.refresh_tokens(wait=no_wait)
    assert not summary.ok
    assert summary.pages == 0
    assert summary.error is not None
    assert "page 1" in summary.error
    assert "failed" in summary.line()
    assert redis_client.get(store.CATALOGUE_KEY) == catalogue
    last_run = json.loads(redis_client.get(store.LAST_RUN_KEY) or "{}")
    last_success = json.loads(redis_client.get(store.LAST_SUCCESS_KEY) or "{}")
    assert last_run["ok"] is False
    assert last_success["ok"] is True
    assert set(last_run) >= {"finished_at", "ok", "pages", "symbols", "skipped", "seconds"}


def test_a_stock_that_cannot_be_stored_is_skipped(
    make_app: Callable[..., Flask], vendor_stub: StubVendor, redis_client: redis.Redis
) -> None:
    item: dict[str, Any] = {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "price": "220.67",
        "sector": "Technology",
        "change": "1.05",
        "lastUpdated": "2026-11-24T23:35:00.000Z",
    }
    unreadable = {**item, "symbol": "BAD", "lastUpdated": "yesterday"}
    blank = {**item, "symbol": " "}
    vendor_stub.answer(
        "GET", "/stocks", json_body={"status": 200, "data": {"items": [item, unreadable, blank]}}
    )
    with make_app(vendor_base_url=vendor_stub.url).app_context():
        summary = tokens.refresh_tokens(wait=no_wait)
    assert summary.ok
    assert (summary.symbols, summary.skipped) == (1, 2)
    assert _token_map(redis_client) == {"AAPL": store.FIRST_PAGE}


def test_one_run_at_a_time(app: Flask, redis_client: redis.Redis, simulator: Simulator) -> None:
    other = redis_client.lock(store.REFRESH_LOCK_KEY, timeout=60)
    assert other.acquire(blocking=False)
    with pytest.raises(AlreadyRunning):
        tokens.refresh_tokens(wait=no_wait)
    assert simulator.stats()["requests"]["list"] == 0
    other.release()
    assert tokens.refresh_tokens(wait=no_wait).ok


def _metrics(client: FlaskClient) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(("trading_tokens_refresh_", "trading_vendor_circuit_open"))
    }


def test_web_pods_export_the_last_runs(
    app: Flask, client: FlaskClient, simulator: Simulator
) -> None:
    assert "trading_tokens_refresh_last_failed" not in _metrics(client)
    good = tokens.refresh_tokens(wait=no_wait)
    exported = _metrics(client)
    assert exported["trading_tokens_refresh_last_success_timestamp_seconds"] == pytest.approx(
        good.finished_at.timestamp()
    )
    assert exported["trading_tokens_refresh_symbols"] == len(simulator.symbols())
    assert exported["trading_tokens_refresh_last_duration_seconds"] == good.seconds
    assert exported["trading_tokens_refresh_last_failed"] == 0
    simulator.configure(error_rate=1.0)
    tokens.refresh_tokens(wait=no_wait)
    exported = _metrics(client)
    assert exported["trading_tokens_refresh_last_failed"] == 1
    assert exported["trading_tokens_refresh_last_success_timestamp_seconds"] == pytest.approx(
        good.finished_at.timestamp()
    )


def test_web_pods_export_the_vendor_circuit(make_app: Any, simulator: Simulator) -> None:
    app = make_app(vendor_circuit_fail_max=1)
    client = app.test_client()
    assert _metrics(client)["trading_vendor_circuit_open"] == 0
    simulator.configure(error_rate=1.0)
    assert client.get("/stocks").status_code == 503
    assert _metrics(client)["trading_vendor_circuit_open"] == 1
