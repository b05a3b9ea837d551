"""Forged ``nextToken``s against the real service: each costs neither a vendor
call nor a byte of Redis (issue 12, point 3)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import redis
import requests

from tests.bench.harness import simulator_admin
from tests.reliability.rig import Rig

FORGERIES = 1_000


def _forgery(number: int, real: str) -> str:
    """A token the service never issued, naming a made-up vendor token: bare (the
    unsigned format of old), with a borrowed signature, or with a random one."""
    vendor_token = base64.b64encode(json.dumps({"symbol": f"Z{number}"}).encode()).decode()
    payload = json.dumps({"o": number % 7, "p": vendor_token}, separators=(",", ":"))
    forged = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    if number % 3 == 0:
        return forged
    signature = real.rsplit(".", 1)[-1] if number % 2 else secrets.token_urlsafe(27)
    return f"{forged}.{signature}"


def _settled_keys(store: redis.Redis, quiet: float = 1.5, timeout: float = 30) -> set[bytes | str]:
    """The database's keys once none has been added for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    keys: set[bytes | str] = set(store.keys("*"))
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now: set[bytes | str] = set(store.keys("*"))
        if now == keys:
            return keys
        keys = now
    raise AssertionError("the service kept writing to Redis")


def test_forged_tokens_cost_no_vendor_call_and_no_redis_memory(rig: Rig) -> None:
    real = rig.get("/stocks?limit=5").json()["nextToken"]
    assert rig.get("/stocks", params={"limit": 5, "nextToken": real}).status_code == 200
    store = redis.Redis.from_url(rig.redis.url)
    keys = _settled_keys(store)  # the pre-caching the real pages started is done
    memory = store.info("memory")["used_memory"]
    calls = simulator_admin(rig.vendor_url, "/_sim/stats")["requests"]["list"]

    def attempt(number: int) -> requests.Response:
        return rig.get("/stocks", params={"limit": 5, "nextToken": _forgery(number, real)})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(attempt, range(FORGERIES)))

    assert {answer.status_code for answer in answers} == {400}
    assert {answer.json()["error"]["code"] for answer in answers} == {"invalid_token"}
    assert simulator_admin(rig.vendor_url, "/_sim/stats")["requests"]["list"] == calls
    assert set(store.keys("*")) == keys
    assert store.info("memory")["used_memory"] - memory < 64 * 1024  # allocator noise only
