"""One system credential per (provider, name): a partial unique index where shop_id IS NULL

The table's unique (shop_id, provider, name) never held for system rows (NULLs are distinct on
SQLite and PostgreSQL alike). Duplicates left by earlier versions keep their newest row.

Revision ID: 0400
Revises: 0300
Create Date: 2026-11-27 07:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0400"
down_revision = "0300"
branch_labels = None
depends_on = None

INDEX = "uq_credentials_system_provider_name"


def upgrade() -> None:
    op.execute(
        "DELETE FROM credentials WHERE shop_id IS NULL AND id NOT IN ("
        " SELECT max(id) FROM credentials WHERE shop_id IS NULL GROUP BY provider, name)"
    )
    op.create_index(
        INDEX,
        "credentials",
        ["provider", "name"],
        unique=True,
        sqlite_where=sa.text("shop_id IS NULL"),
        postgresql_where=sa.text("shop_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="credentials")
