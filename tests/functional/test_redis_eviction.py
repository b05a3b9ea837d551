"""The dev Redis (k8s/dev/redis.yaml) is capped, and when full it evicts cache
keys, never the limiter keys: a real ``redis-server`` with the manifest's
eviction settings is filled past its limit."""

from __future__ import annotations

import redis

from service.marketdata import store
from service.ratelimit import RATE_STORAGE_PREFIX
from service.ratelimit.leases import LIMITER_KEY_SECONDS
from tests.bench.harness import RedisServer
from tests.deploy.helm import MANIFESTS_DIR
from tests.deploy.k8s import load_manifests

UNITS = {"mb": 1024**2, "Mi": 1024**2, "gb": 1024**3, "Gi": 1024**3}


def _dev_redis() -> tuple[dict[str, str], str]:
    """The dev Redis's command-line settings, and its container's memory limit."""
    (deployment,) = [
        obj
        for obj in load_manifests(MANIFESTS_DIR / "dev" / "redis.yaml")
        if obj["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    return dict(zip(args[::2], args[1::2], strict=True)), container["resources"]["limits"]["memory"]


def _bytes(size: str) -> int:
    return int(size[:-2]) * UNITS[size[-2:]]


def test_the_dev_redis_is_capped_below_its_container_limit() -> None:
    settings, limit = _dev_redis()
    assert settings["--maxmemory-policy"] == "volatile-ttl"
    # Room for Redis' own overhead (buffers, fragmentation) under the limit.
    assert _bytes(settings["--maxmemory"]) <= 0.8 * _bytes(limit)


def test_a_full_dev_redis_evicts_cache_keys_and_keeps_limiter_keys(
    private_redis: RedisServer,
) -> None:
    settings, _ = _dev_redis()
    client = redis.Redis.from_url(private_redis.url)
    client.config_set("maxmemory-policy", settings["--maxmemory-policy"])
    client.config_set("maxmemory-samples", settings["--maxmemory-samples"])
    client.config_set("maxmemory", 4 * 1024**2)  # the same policy, filled sooner
    limiter = [f"{RATE_STORAGE_PREFIX}:user-{n}" for n in range(50)]
    for key in limiter:
        client.rpush(key, "1733220000.000001")
        client.expire(key, LIMITER_KEY_SECONDS)
    page = "x" * 10_000
    written = 0
    for n in range(1_000):  # ~10 MB of pages into 4 MB
        client.set(f"stocks:page:{n}", page, ex=store.PAGE_RETENTION_SECONDS - n)
        written += 1

    assert client.info("stats")["evicted_keys"] > 0
    assert client.exists(*limiter) == len(limiter)
    assert client.dbsize() < written + len(limiter)
