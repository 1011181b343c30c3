"""emanage_accounts.account_id indexed: eManageCRM notifications are routed to their shop by it

Revision ID: 1600
Revises: 1500
Create Date: 2026-12-07 15:40:00
"""

from __future__ import annotations

from alembic import op

revision = "1600"
down_revision = "1500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_emanage_accounts_account_id"), "emanage_accounts", ["account_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_emanage_accounts_account_id"), table_name="emanage_accounts")
