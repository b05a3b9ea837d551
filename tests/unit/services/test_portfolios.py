"""The portfolio service's cache: a read racing with a buy never hides the buy."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from service import cache
from service.extensions import db
from service.repositories import portfolios as portfolios_repository
from service.services import portfolios


def _buy(quantity: int) -> None:
    """What a successful buy does to holdings: upsert, commit, invalidate."""
    session = db.session()
    portfolios_repository.add_to_holding(session, "alice", "AAPL", quantity, Decimal(quantity))
    session.commit()
    portfolios.invalidate("alice")


def _quantity() -> int:
    (portfolio,) = portfolios.user_portfolios("alice").items
    (holding,) = portfolio.holdings
    return holding.quantity


def test_a_read_racing_with_a_buy_does_not_cache_the_old_holdings(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    _buy(1)
    store = cache.set_many_json

    def buy_then_store(*args: Any, **kwargs: Any) -> bool:
        _buy(10)  # commits after the reader's query, before the reader caches its result
        return store(*args, **kwargs)

    monkeypatch.setattr(cache, "set_many_json", buy_then_store)
    assert _quantity() == 1  # this reader answers with what it read …
    monkeypatch.undo()
    assert _quantity() == 11  # … but does not hide the buy from the next one
    assert _quantity() == 11
