"""Fault injection: buys and listings while the vendor, Redis or PostgreSQL fail.

Each test sends buy traffic through the real service (gunicorn, 2 workers),
breaks something on the way, lets things come back, replays every attempt
with its idempotency key as a client unsure of an answer would, and then
asserts what the clients saw and the ledger invariants
(:mod:`tests.reliability.ledger`).
What every scenario saw is printed (``pytest -s`` shows it).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from tests.bench.harness import load
from tests.reliability.ledger import UNDECIDED, assert_invariants, plan, replay, send, settle
from tests.reliability.rig import Rig, in_background

ATTEMPTS = 60


def _report(
    scenario: str, first: dict[str, int | None], seen: dict[str, Counter[str]], **more: Any
) -> None:
    """Print what the clients saw first, after their replays, and the ledger's end."""
    extra = "".join(f"; {name} {value}" for name, value in more.items())
    print(
        f"\n{scenario}: answers {dict(Counter(first.values()))}; after replays "
        f"{dict(seen['answers'])}; ledger {dict(seen['ledger'])}{extra}"
    )


def _statuses(answers: dict[str, int | None]) -> set[int | None]:
    return set(answers.values())


def test_vendor_5xx_storm(rig: Rig) -> None:
    attempts = plan(rig, ATTEMPTS)
    rig.configure_vendor(error_rate=0.5)
    answers, _ = send(rig, attempts)
    assert _statuses(answers) <= {201, 502, 503}  # nothing else, no 500, always an answer
    assert {502, 503} & _statuses(answers), "the storm was not felt"
    rig.configure_vendor(error_rate=0.0)
    seen = assert_invariants(rig, attempts, replay(rig, attempts, answers))
    assert seen["ledger"]["succeeded"] + seen["ledger"]["failed"] == ATTEMPTS
    _report("vendor 5xx storm (50 % of calls)", answers, seen)


def test_slow_vendor(rig: Rig) -> None:
    attempts = plan(rig, ATTEMPTS)
    # A third of the orders are answered after 1.5 s, past VENDOR_TIMEOUT_SECONDS (0.5 s).
    rig.configure_vendor(timeout_rate=0.3, slow_seconds=1.5, fault_operations=["buy"])
    answers, result = send(rig, attempts, concurrency=8)
    assert _statuses(answers) <= {201, 502, 503}
    rig.configure_vendor(timeout_rate=0.0)
    seen = assert_invariants(rig, attempts, replay(rig, attempts, answers))
    assert seen["ledger"]["unknown"] > 0, "no order timed out"
    _report("slow vendor (30 % of orders 1.5 s)", answers, seen, p99_ms=round(result.p99))


def test_lost_answers(rig: Rig) -> None:
    attempts = plan(rig, ATTEMPTS)
    rig.configure_vendor(lost_rate=0.4, fault_operations=["buy"])
    answers, _ = send(rig, attempts)
    assert _statuses(answers) <= {201, 502, 503}
    rig.configure_vendor(lost_rate=0.0)
    seen = assert_invariants(rig, attempts, replay(rig, attempts, answers))
    # Every lost answer was an executed order: it is unknown, never resent.
    assert seen["ledger"]["unknown"] > 0
    assert len(rig.vendor_orders()) == seen["ledger"]["succeeded"] + seen["ledger"]["unknown"]
    _report("lost answers (40 % of buys)", answers, seen)


def test_vendor_fully_down(rig: Rig) -> None:
    attempts = plan(rig, 40)
    rig.vendor_proxy.cut()  # connections refused
    started = time.monotonic()
    answers, result = send(rig, attempts)
    down_seconds = time.monotonic() - started
    assert _statuses(answers) <= {502, 503}
    rig.vendor_proxy.restore()
    time.sleep(1.1)  # VENDOR_CIRCUIT_RESET_SECONDS: the circuit lets a trial call through
    later = plan(rig, 20, first=1000)
    # One at a time: the first call after the reset is the circuit's trial.
    later_answers, _ = send(rig, later, concurrency=1)
    assert set(later_answers.values()) == {201}, "the service did not come back with the vendor"
    everything = attempts + later
    seen = assert_invariants(rig, everything, replay(rig, everything, {**answers, **later_answers}))
    assert len(rig.vendor_orders()) == 20
    _report(
        "vendor fully down, then back",
        answers,
        seen,
        p99_ms_while_down=round(result.p99),
        seconds_while_down=round(down_seconds, 1),
    )


def test_redis_stopped_and_restarted(rig: Rig) -> None:
    attempts = plan(rig, 80)
    listing: list[Any] = []

    def browse() -> None:
        listing.append(load(rig.url, ["/stocks", "/stocks?search=a"], total=80, rate_per_second=20))

    with in_background(browse), in_background(lambda: send(rig, attempts, rate=20)) as buying:
        time.sleep(1)
        rig.redis.stop()
        degraded = rig.get("/readyz")
        time.sleep(1)
        rig.redis.start()
    answers, _ = buying.result()
    assert degraded.status_code == 200
    assert degraded.json()["status"] == "degraded"
    assert set(answers.values()) == {201}, "a Redis outage broke buys"
    assert set(listing[0].statuses) == {200}, listing[0].statuses
    assert not listing[0].errors
    seen = assert_invariants(rig, attempts, replay(rig, attempts, answers))
    _report("Redis killed for 1 s", answers, seen, listing=dict(listing[0].statuses))


def test_database_cut_during_traffic(rig: Rig) -> None:
    attempts = plan(rig, 80)
    with in_background(lambda: send(rig, attempts, rate=20)) as buying:
        time.sleep(1)
        rig.database_proxy.cut()
        time.sleep(0.3)
        unready = rig.get("/readyz")
        listed = rig.get("/stocks")
        time.sleep(1)
        rig.database_proxy.restore()
    answers, _ = buying.result()
    assert unready.status_code == 503
    assert listed.status_code == 200, "the listing needs no database"
    assert set(answers.values()) - {201}, "the cut was not felt"
    assert set(answers.values()) <= {201, 503}  # a 503 the client can act on, never a 500
    abandoned = settle(rig.database_url, rig.redis.url)
    later = plan(rig, 20, first=1000)
    later_answers, _ = send(rig, later)
    assert set(later_answers.values()) == {201}, "the service did not come back with PostgreSQL"
    everything = attempts + later
    # A 503 here says "nothing recorded" or "outcome not recorded, ask again":
    # either way the replay tells the attempt's real fate.
    replies = replay(rig, everything, {**answers, **later_answers}, (*UNDECIDED, 503))
    seen = assert_invariants(rig, everything, replies)
    _report(
        "PostgreSQL cut for 1.3 s",
        answers,
        seen,
        left_pending_then_settled=abandoned,
    )
