"""Alembic environment: migrations run on the engine the app configures (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

# Domain models register their tables on Base.metadata when imported; migrations must see all.
import syncapp.billing.models
import syncapp.onboarding.models
import syncapp.sync.models
import syncapp.web.sync_api.keys  # noqa: F401
from syncapp.store.db import make_engine
from syncapp.store.models import Base

config = context.config
target_metadata = Base.metadata


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
