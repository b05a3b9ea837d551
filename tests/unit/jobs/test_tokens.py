"""``flask tokens refresh``: output and exit codes."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from flask import Flask

from service.marketdata import store
from service.services import tokens
from service.vendorapi.simulator import Simulator


def test_refresh_prints_a_summary_and_exits_0(
    app: Flask, simulator: Simulator, redis_client: redis.Redis
) -> None:
    result = app.test_cli_runner().invoke(args=["tokens", "refresh"])
    assert result.exit_code == 0, result.output
    pages, symbols = simulator.page_count(), len(simulator.symbols())
    assert result.stdout.strip().startswith(
        f"tokens refresh done: {pages} pages, {symbols} symbols, 0 skipped,"
    )
    assert result.stderr == ""  # no progress when stderr is not a terminal
    assert redis_client.hlen(store.TOKEN_MAP_KEY) == symbols


def test_a_second_concurrent_run_exits_3(
    app: Flask, simulator: Simulator, redis_client: redis.Redis
) -> None:
    simulator.configure(latency=0.1)
    first = threading.Thread(
        target=app.test_cli_runner().invoke, args=(None, ["tokens", "refresh"])
    )
    first.start()
    deadline = time.monotonic() + 5
    while not redis_client.exists(store.REFRESH_LOCK_KEY) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = app.test_cli_runner().invoke(args=["tokens", "refresh"])
    first.join()
    assert second.exit_code == 3
    assert "another tokens refresh is running" in second.stderr.lower()
    assert redis_client.hlen(store.TOKEN_MAP_KEY) == len(simulator.symbols())


def test_a_run_that_cannot_finish_exits_1(
    app: Flask, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "PAGE_RETRY_WAIT", lambda _state: 0.0)
    simulator.configure(error_rate=1.0)
    result = app.test_cli_runner().invoke(args=["tokens", "refresh"])
    assert result.exit_code == 1
    assert result.stdout.startswith("tokens refresh failed: 0 pages")
