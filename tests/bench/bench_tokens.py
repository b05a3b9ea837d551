"""Token refresh: wall time of ``tokens refresh`` against pages × vendor latency.

The simulator answers every page after a fixed latency (no jitter), so a walk
of N pages cannot take less than N × latency; the rest is the job's own work
(parsing, storing the map and the catalogue in Redis). The real command runs
end to end in a subprocess; its run time is the one it records in Redis
(``stocks:tokens:refresh:last_run``), and the process's wall time, which adds
interpreter and app start-up, is shown beside it. Goal: at most 1.2 × the
vendor's own time.

    python -m tests.bench.run --only tokens [--quick]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import redis

from service.marketdata.store import LAST_RUN_KEY
from tests.bench.harness import (
    DEFAULT_REDIS_URL,
    ROOT,
    BenchmarkError,
    Goal,
    flush_redis,
    print_table,
    service_env,
    simulator_process,
)

GOAL_RATIO = 1.2
LATENCY_SECONDS = 0.05
PAGE_SIZE = 25


def bench(quick: bool = False) -> list[Goal]:
    """Run the job once against a slow simulator; print and return the ratio."""
    pages = 16 if quick else 40
    flush_redis()
    with simulator_process(
        stocks=pages * PAGE_SIZE, page_size=PAGE_SIZE, latency=LATENCY_SECONDS
    ) as vendor:
        env = {**os.environ, **service_env(vendor), "LOG_LEVEL": "warning"}
        command = [sys.executable, "-m", "flask", "--app", "service.wsgi", "tokens", "refresh"]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(f"tokens refresh exited {done.returncode}: {done.stdout}{done.stderr}")
    client = redis.Redis.from_url(DEFAULT_REDIS_URL)
    try:
        last_run = json.loads(client.get(LAST_RUN_KEY) or "{}")
    finally:
        client.close()
    if last_run.get("pages") != pages:
        raise BenchmarkError(f"expected a walk of {pages} pages, the job recorded {last_run}")
    floor = pages * LATENCY_SECONDS
    ratio = last_run["seconds"] / floor
    print_table(
        f"Token refresh ({pages} pages of {PAGE_SIZE}, vendor latency "
        f"{LATENCY_SECONDS * 1000:.0f} ms, no jitter)",
        ["pages × latency s", "job's run s", "ratio", "process wall s (with start-up)"],
        [[floor, float(last_run["seconds"]), f"{ratio:.2f}×", wall]],
    )
    return [
        Goal(
            "tokens",
            "tokens refresh time / (pages × vendor latency)",
            f"{ratio:.2f}× ({last_run['seconds']:.2f} s for {pages} pages)",
            f"≤ {GOAL_RATIO}×",
            ratio <= GOAL_RATIO,
        )
    ]
