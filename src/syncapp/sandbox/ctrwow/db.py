"""The CTRwow sandbox's state: one SQLite file, so a restarted sandbox keeps its accounts,
grants and tokens.

Modules declare their tables with :func:`register_schema` at import time; :class:`SandboxDB`
creates them all on open. Writers go through :meth:`SandboxDB.transaction`, one at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from syncapp.sandbox.sqlite import SQLiteStore

_SCHEMAS: list[str] = []


def register_schema(ddl: str) -> None:
    """Declare tables (``CREATE TABLE IF NOT EXISTS …``) created when a database opens."""
    if ddl not in _SCHEMAS:
        _SCHEMAS.append(ddl)


register_schema(
    """
    CREATE TABLE IF NOT EXISTS meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """
)


def iso(ts: float) -> str:
    """RFC 3339 UTC timestamp, seconds precision."""
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


class SandboxDB(SQLiteStore):
    """The CTRwow sandbox's database."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMAS)

    def meta(self, key: str, default: str) -> str:
        """A persistent setting, stored with ``default`` the first time it is asked for."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row["value"])
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, default))
            return default
