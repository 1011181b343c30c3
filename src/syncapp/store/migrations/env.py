"""Alembic environment: migrations run on the engine the app configures (SQLite or PostgreSQL).

Upgrades and downgrades need no model. Autogenerating a revision does: its caller passes the
whole schema as ``cfg.attributes["target_metadata"] = syncapp.schema.metadata`` (``store/``
imports no domain, so the complete metadata is assembled above it, in :mod:`syncapp.schema`).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from syncapp.store.db import make_engine

config = context.config
target_metadata = config.attributes.get("target_metadata")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


existing = config.attributes.get("connection")
if existing is not None:
    _run(existing)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()
