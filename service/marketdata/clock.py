"""The one clock of market data.

Fetch times, freshness and ages are all read from :func:`now`, so that a test
moves the service's clock in one place (``monkeypatch.setattr(clock, "now", …)``);
callers therefore call it as ``clock.now()``.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
