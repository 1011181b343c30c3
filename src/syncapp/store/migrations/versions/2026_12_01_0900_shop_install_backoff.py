"""Token-exchange backoff on shops (install_failures, install_retry_at, install_error)

A shop whose ID-token exchange Shopify refused (uninstalled, a token it does not accept) or
could not answer used to be sent to Shopify again on every App Home request. The failure
count and the time before which no exchange is tried are recorded per shop.

Revision ID: 0900
Revises: 0700
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0900"
down_revision = "0700"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.add_column(
            sa.Column("install_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("install_retry_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("install_error", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shops") as batch:
        batch.drop_column("install_error")
        batch.drop_column("install_retry_at")
        batch.drop_column("install_failures")
