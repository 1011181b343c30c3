"""inbound_events becomes the bus's event log: partition keys, fenced leases, history, relay

Adds the partition key (shop and object; existing rows get the whole shop), the lease's owner
and fencing token, the attempt history of dead letters, and ``relayed_at`` for the relay to a
broker, with the indexes fair claims and the relay walk; and ``bus_receipts``, the events a
broker consumer group has settled (redeliveries change nothing).

Revision ID: 1200
Revises: 1100
Create Date: 2026-12-01 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1200"
down_revision = "1100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch:
        batch.add_column(sa.Column("partition_key", sa.String(512), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_token", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("history", sa.Text(), nullable=True))
        batch.add_column(sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE inbound_events SET partition_key = shop_domain || '/shop'")
    with op.batch_alter_table("inbound_events") as batch:
        batch.create_index(
            "ix_inbound_events_status_shop_domain_id", ["status", "shop_domain", "id"]
        )
        batch.create_index("ix_inbound_events_partition_key_id", ["partition_key", "id"])
        batch.create_index(
            "ix_inbound_events_unrelayed",
            ["id"],
            sqlite_where=sa.text("relayed_at IS NULL AND status = 'pending'"),
            postgresql_where=sa.text("relayed_at IS NULL AND status = 'pending'"),
        )
    op.create_table(
        "bus_receipts",
        sa.Column("consumer_group", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer_group", "event_id", name=op.f("pk_bus_receipts")),
    )
    op.create_index(op.f("ix_bus_receipts_settled_at"), "bus_receipts", ["settled_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_bus_receipts_settled_at"), table_name="bus_receipts")
    op.drop_table("bus_receipts")
    with op.batch_alter_table("inbound_events") as batch:
        batch.drop_index("ix_inbound_events_unrelayed")
        batch.drop_index("ix_inbound_events_partition_key_id")
        batch.drop_index("ix_inbound_events_status_shop_domain_id")
        batch.drop_column("relayed_at")
        batch.drop_column("history")
        batch.drop_column("lease_token")
        batch.drop_column("lease_owner")
        batch.drop_column("partition_key")
