"""Token refresh lease on connections (refresh_locked_by, refresh_locked_until)

The Shopify token refresh used to hold the shop's lock — on SQLite the database's write lock —
across the HTTP call to Shopify. A lease on the connection row gives the same single flight
without a lock held during the call.

Revision ID: 0500
Revises: 0400
Create Date: 2026-11-27 07:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0500"
down_revision = "0400"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.add_column(sa.Column("refresh_locked_by", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("refresh_locked_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connections") as batch:
        batch.drop_column("refresh_locked_until")
        batch.drop_column("refresh_locked_by")
