"""The one way sandboxes keep state: a SQLite file behind a single locked connection.

A sandbox restarted on the same file is the same system. Handlers run a block as one
transaction with :meth:`SQLiteStore.transaction`; writers are serialised by the lock (SQLite
allows one writer anyway) and a nested call joins the outer transaction, so a state change and
the notification it fires are recorded together.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from syncapp.store.files import private_file


class SQLiteStore:
    """A shared SQLite connection (WAL) created with the given DDL scripts."""

    def __init__(self, path: Path | str, schemas: Iterable[str]) -> None:
        if str(path) != ":memory:":
            # 0600 (0700 directories) before SQLite opens it; its WAL takes the same mode.
            private_file(Path(path))
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        for ddl in schemas:
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

    def close(self) -> None:
        with self._lock:
            self._conn.close()
