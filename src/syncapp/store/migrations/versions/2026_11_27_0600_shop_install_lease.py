"""Install lease on shops (install_locked_by, install_locked_until)

The token exchange at install used to run inside the shop's locked transaction — on SQLite the
database's write lock — for the whole call to Shopify. A lease on the shop row keeps one
exchange per shop without a lock held during the call.

Revision ID: 0600
Revises: 0500
Create Date: 2026-11-27 07:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0600"
down_revision = "0500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.add_column(sa.Column("install_locked_by", sa.String(length=64), nullable=True))
        batch.add_column(
            sa.Column("install_locked_until", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.drop_column("install_locked_until")
        batch.drop_column("install_locked_by")
