"""Queries. Repositories take the session and never commit: services do."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def upsert(session: Session, table: Any) -> Any:
    """An ``INSERT … ON CONFLICT`` builder for the session's backend
    (PostgreSQL in production, SQLite for the embedded default)."""
    return upsert_for(session.get_bind().dialect.name, table)


def upsert_for(dialect: str, table: Any) -> Any:
    """:func:`upsert` for the backend named ``dialect``: for statements built
    once per backend (their values bound at each execution)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
