"""The simulator's knobs: :class:`SimulatorConfig` and the checks of its values."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from decimal import Decimal

from service.config import SIMULATOR_API_KEY

OPERATIONS = ("list", "buy")
"""Vendor operations that are counted and that fault knobs may apply to."""

_SIZE_KNOBS = ("stocks", "page_size", "reprice_seconds")
_RATE_KNOBS = ("error_rate", "timeout_rate", "drop_rate", "lost_rate")
_SECONDS_KNOBS = ("latency", "jitter", "slow_seconds")


@dataclass(frozen=True)
class SimulatorConfig:
    """Knobs of a simulator; every instance is validated on creation.

    Rates are probabilities in [0, 1] drawn per request; durations are seconds.
    Fault knobs apply only to the operations named in ``fault_operations``
    (``"list"``, ``"buy"``); ``latency`` and ``jitter`` apply to every answer
    of those two operations.  Raises ``ValueError`` naming the bad knob.
    """

    stocks: int = 120
    page_size: int = 25
    seed: int = 42
    reprice_seconds: int = 300
    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    timeout_rate: float = 0.0
    slow_seconds: float = 30.0
    drop_rate: float = 0.0
    lost_rate: float = 0.0
    fault_operations: tuple[str, ...] = OPERATIONS
    float_band: bool = False
    api_key: str = SIMULATOR_API_KEY

    def __post_init__(self) -> None:
        """Validate every knob and normalise numbers and sequences."""
        for name in _SIZE_KNOBS:
            self._set(name, as_int(name, getattr(self, name), minimum=1))
        self._set("seed", as_int("seed", self.seed))
        for name in _RATE_KNOBS:
            self._set(name, as_float(name, getattr(self, name), maximum=1.0))
        for name in _SECONDS_KNOBS:
            self._set(name, as_float(name, getattr(self, name)))
        self._set("fault_operations", _as_operations(self.fault_operations))
        if not isinstance(self.float_band, bool):
            raise ValueError(f"float_band must be true or false, got {self.float_band!r}")
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("api_key must be a non-empty string")

    def _set(self, name: str, value: object) -> None:
        """Store a normalised value in this frozen instance (only from ``__post_init__``)."""
        object.__setattr__(self, name, value)

    def as_dict(self) -> dict[str, object]:
        """The knobs as a JSON-ready mapping (``fault_operations`` as a list)."""
        knobs = dataclasses.asdict(self)
        knobs["fault_operations"] = list(self.fault_operations)
        return knobs


KNOBS = frozenset(field.name for field in dataclasses.fields(SimulatorConfig))
"""The names of every knob, as ``SimulatorConfig`` and ``Simulator.configure`` take them."""


def as_int(name: str, value: object, minimum: int | None = None) -> int:
    """``value`` as an int of at least ``minimum``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def as_float(name: str, value: object, maximum: float = math.inf) -> float:
    """``value`` as a finite float in [0, maximum]; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not 0.0 <= number <= maximum or math.isinf(number):
        bounds = f"in [0, {maximum:g}]" if maximum < math.inf else ">= 0 and finite"
        raise ValueError(f"{name} must be {bounds}, got {value}")
    return number


def _as_operations(value: object) -> tuple[str, ...]:
    """``value`` as a tuple of known operation names; ValueError otherwise."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"fault_operations must be a list of operation names, got {value!r}")
    unknown = [operation for operation in value if operation not in OPERATIONS]
    if unknown:
        raise ValueError(f"fault_operations: unknown {unknown!r}; known: {list(OPERATIONS)}")
    return tuple(dict.fromkeys(value))
