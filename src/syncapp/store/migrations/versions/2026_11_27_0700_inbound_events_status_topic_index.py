"""inbound_events: index (status, topic, id) replaces (status, id)

The worker claims due events of its own topics in id order. With (status, id) every claim
walked all pending events of other topics — products and orders wait for the sync engine, so
that grew with every stored webhook, inside the claim's write transaction.

Revision ID: 0700
Revises: 0600
Create Date: 2026-11-27 08:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0700"
down_revision = "0600"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch:
        batch.create_index("ix_inbound_events_status_topic_id", ["status", "topic", "id"])
        batch.drop_index("ix_inbound_events_status_id")


def downgrade() -> None:
    with op.batch_alter_table("inbound_events") as batch:
        batch.create_index("ix_inbound_events_status_id", ["status", "id"])
        batch.drop_index("ix_inbound_events_status_topic_id")
