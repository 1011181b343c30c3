"""The sync engine's state: sync_settings, sync_links, sync_conflicts, sync_cursors

Per-shop settings (Keep Products Synchronized, default ON), one link per synced pair with the
last agreed state and its fingerprints, recorded conflicts, and the resumable cursors of
backfills and sweeps; every table cascades from ``shops`` (shop/redact erases it).

Revision ID: 1400
Revises: 1200
Create Date: 2026-12-07 12:21:54.394786
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1400"
down_revision = "1200"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_cursors",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("position", sa.JSON(), nullable=False),
        sa.Column("done", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_sync_cursors_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", "name", name=op.f("pk_sync_cursors")),
    )
    op.create_table(
        "sync_links",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("shopify_gid", sa.String(length=128), nullable=True),
        sa.Column("emanage_id", sa.String(length=64), nullable=True),
        sa.Column("sku", sa.String(length=255), nullable=True),
        sa.Column("shopify_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("emanage_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("agreed", sa.JSON(), nullable=True),
        sa.Column("shopify_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emanage_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("emanage_version", sa.Integer(), nullable=True),
        sa.Column("archived", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("last_operation", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["sync_links.id"],
            name=op.f("fk_sync_links_parent_id_sync_links"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"], ["shops.id"], name=op.f("fk_sync_links_shop_id_shops"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_links")),
        sa.UniqueConstraint(
            "shop_id", "kind", "emanage_id", name=op.f("uq_sync_links_shop_id_kind_emanage_id")
        ),
        sa.UniqueConstraint(
            "shop_id", "kind", "shopify_gid", name=op.f("uq_sync_links_shop_id_kind_shopify_gid")
        ),
    )
    with op.batch_alter_table("sync_links", schema=None) as batch_op:
        batch_op.create_index("ix_sync_links_parent_id", ["parent_id"], unique=False)

    op.create_table(
        "sync_settings",
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("keep_products_synchronized", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_sync_settings_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_sync_settings")),
    )
    op.create_table(
        "sync_conflicts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("shop_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("link_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("shopify_value", sa.JSON(), nullable=True),
        sa.Column("emanage_value", sa.JSON(), nullable=True),
        sa.Column("winner", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["sync_links.id"],
            name=op.f("fk_sync_conflicts_link_id_sync_links"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["shop_id"],
            ["shops.id"],
            name=op.f("fk_sync_conflicts_shop_id_shops"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_conflicts")),
    )
    with op.batch_alter_table("sync_conflicts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_conflicts_shop_id_created_at", ["shop_id", "created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_conflicts", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_conflicts_shop_id_created_at")

    op.drop_table("sync_conflicts")
    op.drop_table("sync_settings")
    with op.batch_alter_table("sync_links", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_links_parent_id")

    op.drop_table("sync_links")
    op.drop_table("sync_cursors")
