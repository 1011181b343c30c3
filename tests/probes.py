"""Probes of the database from outside the code under test."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlalchemy.exc import DBAPIError

from syncapp.store.models import Connection


def write_without_waiting(engine: Engine) -> str:
    """``'written'`` when a write transaction gets its locks at once, else why it could not.

    SQLite: ``BEGIN IMMEDIATE`` with no busy timeout fails while any other connection holds
    the write lock. PostgreSQL: an UPDATE of every ``connections`` row with a 1 ms lock
    timeout fails while any of them is locked. Rolled back either way.
    """
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA busy_timeout=0")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("SET lock_timeout = '1ms'")
            conn.execute(update(Connection).values(detail=Connection.detail))
            conn.rollback()
    except DBAPIError as exc:
        return f"blocked: {exc.orig}"
    return "written"
