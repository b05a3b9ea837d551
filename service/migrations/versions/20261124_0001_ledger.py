"""The ledger: transactions, portfolios, holdings, daily summaries, report runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(precision=20, scale=6)
UTC_TIME = sa.DateTime(timezone=True)
PENDING = sa.text("status = 'pending'")


def upgrade():
    op.create_table(
        "transactions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=10), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("requested_price", MONEY, nullable=False),
        sa.Column("market_price", MONEY, nullable=True),
        sa.Column("executed_price", MONEY, nullable=True),
        sa.Column("total", MONEY, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("vendor_status", sa.SmallInteger(), nullable=True),
        sa.Column("vendor_message", sa.Text(), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("completed_at", UTC_TIME, nullable=True),
        sa.CheckConstraint(
            "(status = 'pending') = (completed_at IS NULL)",
            name=op.f("ck_transactions_completed_when_final"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'rejected', 'failed', 'unknown')",
            name=op.f("ck_transactions_status"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_transactions_attempts_not_negative")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_transactions_quantity_positive")),
        sa.CheckConstraint(
            "requested_price > 0", name=op.f("ck_transactions_requested_price_positive")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("uq_transactions_user_id_idempotency_key")
        ),
    )
    op.create_index("ix_transactions_created_at", "transactions", ["created_at"])
    op.create_index(
        "ix_transactions_pending",
        "transactions",
        ["created_at"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_table(
        "portfolios",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portfolios")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_portfolios_user_id_name")),
    )
    op.create_table(
        "holdings",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("portfolio_id", BIG_ID, nullable=False),
        sa.Column("symbol", sa.String(length=10), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("cost_basis", MONEY, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.CheckConstraint("cost_basis >= 0", name=op.f("ck_holdings_cost_basis_not_negative")),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_holdings_quantity_not_negative")),
        sa.ForeignKeyConstraint(
            ["portfolio_id"],
            ["portfolios.id"],
            name=op.f("fk_holdings_portfolio_id_portfolios"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holdings")),
        sa.UniqueConstraint("portfolio_id", "symbol", name=op.f("uq_holdings_portfolio_id_symbol")),
    )
    op.create_table(
        "daily_summaries",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("symbol", sa.String(length=10), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "status", "reason", "symbol", name=op.f("pk_daily_summaries")
        ),
    )
    op.create_table(
        "report_runs",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("claimed_at", UTC_TIME, nullable=False),
        sa.Column("sent_at", UTC_TIME, nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('sending', 'sent', 'failed')", name=op.f("ck_report_runs_state")
        ),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_report_runs")),
    )


def downgrade():
    op.drop_table("report_runs")
    op.drop_table("daily_summaries")
    op.drop_table("holdings")
    op.drop_table("portfolios")
    op.drop_index("ix_transactions_pending", table_name="transactions")
    op.drop_index("ix_transactions_created_at", table_name="transactions")
    op.drop_table("transactions")
