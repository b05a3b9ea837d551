"""Failure injection: what the fault knobs decide for each vendor request."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

from service.vendorapi.simulator.config import OPERATIONS, SimulatorConfig

FAULTS = ("drop", "error", "lost", "slow")
"""Kinds of injected faults, as counted in ``Simulator.stats()``."""


@dataclass(frozen=True)
class Fate:
    """What the fault knobs decided for one request.

    ``delay``: seconds to wait before any answer; ``drop``: close the
    connection without executing anything; ``error``: answer 500 without
    executing; ``lost``: execute, then close without answering; ``slow``:
    extra seconds before an answer of an executed request.
    """

    delay: float = 0.0
    drop: bool = False
    error: bool = False
    lost: bool = False
    slow: float = 0.0


class Faults:
    """Seeded draws of request fates, with counts of requests and injected faults.

    Thread-safe.  The draws are reproducible for a seed as long as requests
    arrive in the same order.
    """

    def __init__(self, seed: int) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._requests: dict[str, int] = {}
        self._faults: dict[str, int] = {}
        self.reseed(seed)
        self.clear()

    def reseed(self, seed: int) -> None:
        """Restart the draws from ``seed``; counts are kept."""
        with self._lock:
            self._rng = random.Random(f"{seed}:faults")

    def clear(self) -> None:
        """Forget every count."""
        with self._lock:
            self._requests = dict.fromkeys(OPERATIONS, 0)
            self._faults = dict.fromkeys(FAULTS, 0)

    def draw(self, operation: str | None, config: SimulatorConfig) -> Fate:
        """Count a vendor operation and draw its fate; other routes get no fault."""
        with self._lock:
            if operation not in OPERATIONS:
                return Fate()
            self._requests[operation] += 1
            # Five draws whatever the knobs, so that turning one knob does not
            # shift the draws of the others.
            drop, error, lost, slow, jitter = (self._rng.random() for _ in range(5))
        faulty = operation in config.fault_operations
        return Fate(
            delay=config.latency + jitter * config.jitter,
            drop=faulty and drop < config.drop_rate,
            error=faulty and error < config.error_rate,
            lost=faulty and lost < config.lost_rate,
            slow=config.slow_seconds if faulty and slow < config.timeout_rate else 0.0,
        )

    def count(self, kind: str) -> None:
        """Count one injected fault of ``kind`` (one of ``FAULTS``)."""
        with self._lock:
            self._faults[kind] += 1

    def stats(self) -> dict[str, dict[str, int]]:
        """Requests per operation (``list``, ``buy``) and faults injected, by kind."""
        with self._lock:
            return {"requests": dict(self._requests), "faults": dict(self._faults)}
