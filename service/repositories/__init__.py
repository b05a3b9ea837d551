"""Queries. Repositories take the session and never commit: services do."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert(session: Session, table: Any) -> Any:
    """An ``INSERT … ON CONFLICT`` builder for the session's backend
    (PostgreSQL in production, SQLite for the embedded default)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
