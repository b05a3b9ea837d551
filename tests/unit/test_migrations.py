"""Migrations build the schema from nothing and match the models."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from service.app import create_app
from service.config import Settings
from service.extensions import db
from service.models.base import Base


def test_postgres_schema_from_migrations_matches_the_models(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            differences = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
    finally:
        engine.dispose()
    assert differences == []


def test_postgres_constraints_protect_the_ledger(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            checks = {
                row[0]
                for row in conn.execute(
                    sa.text(
                        "SELECT conname FROM pg_constraint"
                        " WHERE conrelid = 'transactions'::regclass"
                    )
                )
            }
            money_types = set(
                conn.execute(
                    sa.text(
                        "SELECT data_type FROM information_schema.columns"
                        " WHERE table_name = 'transactions' AND column_name LIKE '%price%'"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()
    assert {
        "ck_transactions_status",
        "uq_transactions_user_id_idempotency_key",
        "ck_transactions_completed_when_final",
    } <= checks
    assert money_types == {"numeric"}


def test_sqlite_embedded_default_migrates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    app = create_app(Settings.from_env({}, database_url=url))
    with app.app_context():
        upgrade()
        tables = set(sa.inspect(db.engine).get_table_names())
        for engine in db.engines.values():
            engine.dispose()
    assert {
        "transactions",
        "portfolios",
        "holdings",
        "daily_summaries",
        "report_runs",
        "alembic_version",
    } <= tables
