"""Made-up symbols against the real service (gunicorn, 2 workers): buys of
symbols the vendor does not list cost one catalogue walk between them, then
no vendor call — and after a Redis restart (nothing cached) one walk again."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.bench.harness import simulator_admin
from tests.reliability.rig import Rig

PAGES = 5  # the simulator's 120 stocks, 25 a page
MADE_UP = ["ZZZZZZ", "QQQQQQ", "NOPE.X", "XYZZY"]


def _vendor_pages(rig: Rig) -> int:
    requests_by_kind: dict[str, int] = simulator_admin(rig.vendor_url, "/_sim/stats")["requests"]
    assert requests_by_kind["buy"] == 0
    return requests_by_kind["list"]


def _buy_all(rig: Rig, count: int) -> Counter[tuple[int, str]]:
    """``count`` buys of made-up symbols, 16 at a time: (status, error code) → how many."""

    def buy(n: int) -> tuple[int, str]:
        response = requests.post(
            f"{rig.url}/stocks/{MADE_UP[n % len(MADE_UP)]}/buy",
            json={"userId": f"u{n % 7}", "price": "10.00", "quantity": 1},
            timeout=30,
        )
        return response.status_code, response.json()["error"]["code"]

    with ThreadPoolExecutor(16) as pool:
        return Counter(pool.map(buy, range(count)))


def test_made_up_symbols_walk_once_also_after_a_redis_restart(
    make_rig: Callable[..., Rig],
) -> None:
    # A one-second repricing cycle: between rounds the walked pages go stale
    # and the remembered unknown symbols expire; the stored catalogue stays.
    rig = make_rig(CACHE_TTL_SECONDS="1")
    for restart in range(2):
        if restart:
            rig.redis.stop()  # everything cached is gone
            rig.redis.start()
        assert _buy_all(rig, 40) == {(404, "unknown_symbol"): 40}
        assert _vendor_pages(rig) == (restart + 1) * PAGES, "concurrent buys share one walk"
        time.sleep(1.5)
        assert _buy_all(rig, 40) == {(404, "unknown_symbol"): 40}
        assert _vendor_pages(rig) == (restart + 1) * PAGES, "no vendor call after the walk"
    print(f"\nmade-up symbols: 160 buys, {2 * PAGES} vendor page requests (2 walks)")
