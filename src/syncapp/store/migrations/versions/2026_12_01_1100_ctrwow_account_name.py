"""ctrwow_accounts.name: the CTRwow account's own name, shown instead of its id

Revision ID: 1100
Revises: 0900
Create Date: 2026-12-01 22:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1100"
down_revision = "0900"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ctrwow_accounts") as batch:
        batch.add_column(sa.Column("name", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ctrwow_accounts") as batch:
        batch.drop_column("name")
