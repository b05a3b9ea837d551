"""How the app talks to PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask, request
from sqlalchemy import text

from service.extensions import db


def test_postgres_sessions_end_when_idle_in_a_transaction(app: Flask) -> None:
    # A client that vanished mid-transaction must not hold ledger row locks.
    timeout = db.session.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
    assert timeout == "1min"


def test_without_a_trusted_proxy_no_forwarded_header_is_believed(
    make_app: Callable[..., Flask],
) -> None:
    forged = {"X-Forwarded-For": "198.51.100.9", "X-Forwarded-Proto": "https"}
    seen = []
    for proxies in (0, 1):
        app = make_app(trusted_proxies=proxies)
        app.add_url_rule(
            "/seen", view_func=lambda: {"ip": request.remote_addr, "proto": request.scheme}
        )
        seen.append(app.test_client().get("/seen", headers=forged).json)
    assert seen == [
        {"ip": "127.0.0.1", "proto": "http"},  # the client's own claims: ignored
        {"ip": "198.51.100.9", "proto": "https"},  # what the trusted proxy saw
    ]


def test_coroutine_views_are_still_told_apart(app: Flask) -> None:
    """``ensure_sync``'s answers are remembered, not changed: an ``async``
    view still needs Flask's async extra (not installed), a plain one runs as is."""

    async def coroutine_view() -> dict[str, str]:
        return {}

    def plain_view() -> dict[str, str]:
        return {}

    for _ in range(2):  # asked again: the remembered answer
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(coroutine_view)
        assert app.ensure_sync(plain_view) is plain_view
