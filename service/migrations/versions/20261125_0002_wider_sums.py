"""Sums of many transactions get room: daily_summaries.amount and
holdings.cost_basis become NUMERIC(38, 6) (one transaction stays under 10^14,
a day of them may not).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NARROW = sa.Numeric(precision=20, scale=6)
WIDE = sa.Numeric(precision=38, scale=6)
COLUMNS = (("daily_summaries", "amount"), ("holdings", "cost_basis"))


def upgrade():
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=WIDE, existing_type=NARROW, existing_nullable=False)


def downgrade():
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=NARROW, existing_type=WIDE, existing_nullable=False)
