"""The CTRwow sandbox's state: one SQLite file, so a restarted sandbox keeps its accounts,
grants and tokens.

Modules declare their tables with :func:`register_schema` at import time; :class:`SandboxDB`
creates them all on open. Writers go through :meth:`SandboxDB.transaction`, one at a time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

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


class SandboxDB:
    """A single SQLite connection shared by the handlers, guarded by a lock."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        for ddl in _SCHEMAS:
            self._conn.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run a block as one transaction; nested calls join the outer one."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def meta(self, key: str, default: str) -> str:
        """A persistent setting, stored with ``default`` the first time it is asked for."""
        with self.transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row["value"])
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, default))
            return default

    def close(self) -> None:
        with self._lock:
            self._conn.close()
