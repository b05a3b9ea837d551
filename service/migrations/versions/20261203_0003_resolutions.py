"""Reconciliation and history: operators' resolutions of unknown attempts
(transaction_resolutions, append-only, one per attempt), the index of unknown
attempts, and the indexes of a user's history (newest first, optionally by
symbol or status).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(precision=20, scale=6)
UTC_TIME = sa.DateTime(timezone=True)
UNKNOWN = sa.text("status = 'unknown'")
NEWEST_FIRST = (sa.text("created_at DESC"), sa.text("id DESC"))
HISTORY_INDEXES = {
    "ix_transactions_user_created": ("user_id",),
    "ix_transactions_user_symbol_created": ("user_id", "symbol"),
    "ix_transactions_user_status_created": ("user_id", "status"),
}


def upgrade():
    op.create_table(
        "transaction_resolutions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("transaction_id", BIG_ID, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("executed_price", MONEY, nullable=True),
        sa.Column("total", MONEY, nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_at", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "status IN ('succeeded', 'failed')", name=op.f("ck_transaction_resolutions_status")
        ),
        sa.CheckConstraint(
            "(status = 'succeeded') = (executed_price IS NOT NULL AND total IS NOT NULL)",
            name=op.f("ck_transaction_resolutions_priced_when_succeeded"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_transaction_resolutions_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transaction_resolutions")),
        sa.UniqueConstraint(
            "transaction_id", name=op.f("uq_transaction_resolutions_transaction_id")
        ),
    )
    op.create_index(
        "ix_transactions_unknown",
        "transactions",
        ["created_at"],
        postgresql_where=UNKNOWN,
        sqlite_where=UNKNOWN,
    )
    for name, leading in HISTORY_INDEXES.items():
        op.create_index(name, "transactions", [*leading, *NEWEST_FIRST])


def downgrade():
    for name in HISTORY_INDEXES:
        op.drop_index(name, table_name="transactions")
    op.drop_index("ix_transactions_unknown", table_name="transactions")
    op.drop_table("transaction_resolutions")
