"""The Shopify sandbox's state: one SQLite file, so a restarted sandbox is the same shop.

Every module that keeps state declares its tables with :func:`register_schema` at import
time; :class:`SandboxDB` creates them all on open. Access goes through
:meth:`SandboxDB.transaction`, which serialises writers (SQLite allows one anyway) and commits
or rolls back as a unit, so a state change and the webhook it fires are recorded together.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from syncapp.sandbox.sqlite import SQLiteStore

_SCHEMAS: list[str] = []
_COLUMNS: list[tuple[str, str, str]] = []


def register_schema(ddl: str) -> None:
    """Declare tables (``CREATE TABLE IF NOT EXISTS …``) created when a database opens."""
    if ddl not in _SCHEMAS:
        _SCHEMAS.append(ddl)


register_schema(
    """
    CREATE TABLE IF NOT EXISTS shops (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        domain TEXT NOT NULL UNIQUE,          -- demo.myshopify.com
        name TEXT NOT NULL,
        email TEXT NOT NULL,
        currency_code TEXT NOT NULL DEFAULT 'USD',
        plan_name TEXT NOT NULL DEFAULT 'Standard',  -- Standard | Advanced | Plus | Enterprise
        app_installed INTEGER NOT NULL DEFAULT 1,   -- webhooks go only to shops with the app
        created_at TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS webhook_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        shop_domain TEXT NOT NULL,
        topic TEXT NOT NULL,                  -- products/update
        event_id TEXT NOT NULL,               -- one per underlying event
        payload TEXT NOT NULL,                -- REST-shaped JSON, as Shopify sends it
        triggered_at TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """
)


def register_column(table: str, column: str, declaration: str) -> None:
    """Declare a column added after ``table`` first shipped; a database lacking it gets it.

    A sandbox restarted on an older file is then upgraded in place instead of failing.
    """
    entry = (table, column, declaration)
    if entry not in _COLUMNS:
        _COLUMNS.append(entry)


def utcnow_iso() -> str:
    """Shopify-style timestamp with seconds precision and an explicit offset."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SandboxDB(SQLiteStore):
    """The Shopify sandbox's database, with every table registered so far."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMAS)
        with self.transaction() as conn:
            for table, column, declaration in _COLUMNS:
                present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
