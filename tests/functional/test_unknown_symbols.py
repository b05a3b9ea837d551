"""Made-up symbols cost bounded work: one catalogue walk, shared by every pod,
then no vendor call at all — also after a Redis restart, when no catalogue
is cached, and after the walked pages went stale."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from service.marketdata import clock, fill, store, walk
from service.marketdata.codec import CachedPage, Catalogue
from service.services import stocks
from service.vendorapi.errors import UnknownSymbol
from service.vendorapi.simulator import Simulator
from tests.buys_support import ledger, post_buy

PAGES = 5  # the simulator's 120 stocks, 25 a page


def _listed(simulator: Simulator) -> int:
    return simulator.stats()["requests"]["list"]


def _buy_unknown(client: FlaskClient, symbol: str) -> None:
    response = post_buy(client, "10.00", symbol=symbol)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "unknown_symbol"


def test_made_up_symbols_cost_one_walk_then_no_vendor_call(
    client: FlaskClient,
    simulator: Simulator,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for restart in range(2):
        redis_client.flushdb()  # a Redis restart: no catalogue, no pages, no token map
        before = _listed(simulator)
        _buy_unknown(client, "ZZZZZZ")
        assert _listed(simulator) - before == PAGES, f"restart {restart}: one walk"

        # A repricing cycle later the walked pages are stale; the made-up
        # symbol, and any other, still costs the vendor nothing.
        start = clock.now()
        monkeypatch.setattr(clock, "now", lambda start=start: start + timedelta(seconds=301))
        for symbol in ["ZZZZZZ", "ZZZZZZ", "QQQQQQ", "NOPE.X"]:
            _buy_unknown(client, symbol)
        assert _listed(simulator) - before == PAGES, f"restart {restart}: no second walk"
        monkeypatch.undo()

    assert simulator.stats()["requests"]["buy"] == 0
    assert {row.status for row in ledger()} == {"failed"}
    assert redis_client.ttl(store.unknown_key("ZZZZZZ")) in range(1, 301)


def test_a_walk_in_progress_elsewhere_is_waited_for_and_its_result_read(
    app: Flask, simulator: Simulator
) -> None:
    """Another pod holds the walk lock: this buy makes no vendor call of its own."""
    other_pod = store.walk_lock(30)
    assert other_pod.acquire()
    outcome: list[BaseException] = []

    def buy_path() -> None:
        with app.app_context():
            try:
                stocks.market_price("ZZZZZZ")
            except UnknownSymbol as exc:
                outcome.append(exc)

    waiter = threading.Thread(target=buy_path)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), "the buy waits for the walk"
    # The other pod's walk ends: it stores the catalogue and lets go of the lock.
    store.store_catalogue(Catalogue.of([], clock.now()))
    other_pod.release()
    waiter.join(5)

    assert [type(exc) for exc in outcome] == [UnknownSymbol]
    assert _listed(simulator) == 0


def test_concurrent_walks_in_several_pods_walk_once(
    make_app: Callable[..., Flask], simulator: Simulator
) -> None:
    pods = [make_app() for _ in range(3)]
    simulator.configure(latency=0.05)
    start = threading.Barrier(6)
    found: list[int] = []

    def search(app: Flask) -> None:
        with app.app_context():
            start.wait()
            found.append(len(walk.shared_catalogue(fill.load_for_trading)[0].entries))

    threads = [threading.Thread(target=search, args=(pods[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert found == [120] * 6
    assert _listed(simulator) == PAGES


def test_a_walk_over_cached_pages_fills_the_token_map_again(
    client: FlaskClient, simulator: Simulator, redis_client: redis.Redis
) -> None:
    """The map lost its entries (evicted) while the pages stayed cached: the
    walk that finds a symbol, served by the cache, puts them back, so the
    next buy of another symbol on a later page is one page away, not a walk."""

    def load(token: str | None) -> CachedPage:
        return fill.load_page(token)[0]

    walk.catalogue(load)  # every page cached, map and catalogue stored
    last = simulator.symbols()[-1]
    redis_client.delete(store.TOKEN_MAP_KEY, store.CATALOGUE_KEY)
    before = _listed(simulator)

    walk.catalogue(load)

    assert _listed(simulator) == before  # served by the page cache
    assert redis_client.hget(store.TOKEN_MAP_KEY, last) is not None
    assert redis_client.hlen(store.TOKEN_MAP_KEY) == len(simulator.symbols())
