"""``redis_guard``: Redis failures fail open, every other error still raises."""

from __future__ import annotations

import pytest
import redis

from service.cache import redis_guard
from service.metrics import REDIS_ERRORS


def _errors(component: str) -> float:
    (family,) = REDIS_ERRORS.collect()
    counted = [
        sample.value
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels == {"component": component}
    ]
    return sum(counted)


def test_a_redis_error_ends_the_block_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = _errors("guard-test")
    reached: list[bool] = []
    with redis_guard("guard-test") as guard:
        raise redis.ConnectionError("Redis is away")
        reached.append(True)
    assert guard.failed
    assert isinstance(guard.error, redis.ConnectionError)
    assert reached == []
    assert _errors("guard-test") == before + 1
    assert "redis unavailable, bypassed" in caplog.text


def test_a_block_that_succeeds_has_not_failed() -> None:
    before = _errors("guard-test")
    with redis_guard("guard-test") as guard:
        pass
    assert not guard.failed
    assert _errors("guard-test") == before


def test_any_other_error_is_not_swallowed() -> None:
    with pytest.raises(KeyError), redis_guard("guard-test"):
        raise KeyError("a bug, not Redis")
