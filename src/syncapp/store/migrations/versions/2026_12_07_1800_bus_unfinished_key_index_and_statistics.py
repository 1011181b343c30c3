"""bus: a partial index of unfinished events by key; statistics kept fresh on PostgreSQL

The embedded claim and the broker relay ask, for every candidate, whether an earlier event of
its partition key is unfinished. ``ix_inbound_events_unfinished_key`` answers that from the
unfinished rows only (a key's done history is never walked), and it is the index a planner
without statistics still picks.

On PostgreSQL the bus tables churn fast (every event is inserted, updated twice and pruned), so
the default autovacuum triggers (20 % of the table changed) leave the planner on stale or
missing statistics for long stretches: measured, ~700 ms per claim on a fresh table that had
never been analysed. Per-table thresholds make autoanalyze and autovacuum follow the churn; an
ANALYZE now gives an upgraded database statistics at once. Nothing of this applies to SQLite.

Revision ID: 1800
Revises: 1600
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "1800"
down_revision = "1600"
branch_labels = None
depends_on = None

UNFINISHED = "status IN ('pending', 'processing', 'relaying', 'relayed', 'retrying')"

# Analyse after 1,000 changed rows plus 2 %, vacuum after 2,000 plus 5 %, without the cost
# delay (the tables are small once pruned; a slow vacuum lets dead rows pile up meanwhile).
SETTINGS = {
    "inbound_events": (
        "autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.02, "
        "autovacuum_vacuum_threshold = 2000, autovacuum_vacuum_scale_factor = 0.05, "
        "autovacuum_vacuum_insert_threshold = 2000, autovacuum_vacuum_insert_scale_factor = 0.05, "
        "autovacuum_vacuum_cost_delay = 0"
    ),
    "bus_receipts": (
        "autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.02, "
        "autovacuum_vacuum_threshold = 2000, autovacuum_vacuum_scale_factor = 0.05"
    ),
}
RESET = {
    "inbound_events": (
        "autovacuum_analyze_threshold, autovacuum_analyze_scale_factor, "
        "autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor, "
        "autovacuum_vacuum_insert_threshold, autovacuum_vacuum_insert_scale_factor, "
        "autovacuum_vacuum_cost_delay"
    ),
    "bus_receipts": (
        "autovacuum_analyze_threshold, autovacuum_analyze_scale_factor, "
        "autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor"
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("inbound_events", schema=None) as batch:
        batch.create_index(
            "ix_inbound_events_unfinished_key",
            ["partition_key", "id"],
            unique=False,
            sqlite_where=sa.text(UNFINISHED),
            postgresql_where=sa.text(UNFINISHED),
        )
    if op.get_bind().dialect.name == "postgresql":
        for table, settings in SETTINGS.items():
            op.execute(f"ALTER TABLE {table} SET ({settings})")
            op.execute(f"ANALYZE {table}")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, settings in RESET.items():
            op.execute(f"ALTER TABLE {table} RESET ({settings})")
    with op.batch_alter_table("inbound_events", schema=None) as batch:
        batch.drop_index("ix_inbound_events_unfinished_key")
