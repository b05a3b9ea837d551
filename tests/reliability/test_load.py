"""Load past the global rate limit, on loopback, bounded in count and time.

Listing and buy traffic together at twice ``RATE_LIMIT`` for a few seconds:
the excess is refused with 429 (the JSON error envelope and ``Retry-After``),
nothing else goes wrong (no 5xx, no connection errors), no more than the limit
is admitted per second, and the ledger holds exactly the admitted buys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import requests

from tests.bench.harness import LoadResult, load
from tests.reliability.ledger import assert_invariants, plan, send
from tests.reliability.rig import Rig, in_background

RATE = 20  # RATE_LIMIT, requests per second
SECONDS = 5
LISTING_RATE = RATE * 3 // 2  # with the buys: twice the limit
BUY_RATE = RATE // 2


def test_twice_the_rate_limit_gets_429s_and_nothing_else(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(
        RATE_LIMIT_ENABLED="true", RATE_LIMIT=f"{RATE}/second", MAX_CONCURRENT_REQUESTS="10"
    )
    attempts = plan(rig, BUY_RATE * SECONDS)
    listing: list[LoadResult] = []

    def browse() -> None:
        total = LISTING_RATE * SECONDS
        listing.append(load(rig.url, ["/stocks"], total=total, rate_per_second=LISTING_RATE))

    started = time.monotonic()
    with in_background(browse):
        answers, buying = send(rig, attempts, rate=BUY_RATE)
    elapsed = time.monotonic() - started
    [browsing] = listing

    assert set(browsing.statuses) <= {200, 429}, browsing.statuses
    assert set(answers.values()) <= {201, 429}, answers
    assert browsing.errors == buying.errors == 0  # every request got an answer
    refused = browsing.statuses[429] + buying.statuses[429]
    admitted = browsing.statuses[200] + buying.statuses[201]
    assert refused > 0
    # A moving window of one second: at most RATE in any second of the run.
    assert admitted <= RATE * math.ceil(elapsed + 1)
    seen = assert_invariants(rig, attempts, answers)
    print(
        f"\n{2 * RATE}/s against RATE_LIMIT={RATE}/second for {elapsed:.1f} s: "
        f"listing {dict(browsing.statuses)}, buys {dict(seen['answers'])}, "
        f"ledger {dict(seen['ledger'])}"
    )

    refusal = _first_refusal(rig.url + "/stocks", tries=5 * RATE)
    assert refusal.json()["error"]["code"] == "rate_limited"
    assert int(refusal.headers["Retry-After"]) >= 1


def _first_refusal(url: str, tries: int) -> requests.Response:
    """The first 429 of a burst of requests (at most ``tries``)."""
    for _ in range(tries):
        response = requests.get(url, timeout=10)
        if response.status_code == 429:
            return response
    raise AssertionError(f"{tries} requests in a row were all admitted")
