"""How the app talks to PostgreSQL."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import text

from service.extensions import db


def test_postgres_sessions_end_when_idle_in_a_transaction(app: Flask) -> None:
    # A client that vanished mid-transaction must not hold ledger row locks.
    timeout = db.session.execute(text("SHOW idle_in_transaction_session_timeout")).scalar()
    assert timeout == "1min"
