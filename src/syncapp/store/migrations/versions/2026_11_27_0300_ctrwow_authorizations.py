"""CTRwow OAuth connect: pending authorizations (state hash, encrypted PKCE verifier)

Revision ID: 0300
Revises: 0200
Create Date: 2026-11-27 05:35:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0300"
down_revision = "0200"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ctrwow_authorizations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("verifier_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_ctrwow_authorizations_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ctrwow_authorizations")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_ctrwow_authorizations_state_hash")),
    )
    with op.batch_alter_table("ctrwow_authorizations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ctrwow_authorizations_shop_id"), ["shop_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ctrwow_authorizations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ctrwow_authorizations_shop_id"))

    op.drop_table("ctrwow_authorizations")
